"""Retrieval counting (A-MEM's `retrieval_count` and `last_accessed`), written behind.

Every search used to write its hits back to ChromaDB at once: one store write per search, on
the read path. Instead searches add to in-memory counts, and a background task flushes them
every `flush_s`: per tenant, it reads the notes' current counts and writes count + retrievals
and the latest access time, two fields only (a concurrent edit of other fields survives). A
crash loses at most `flush_s` of counts: statistics, never acknowledged writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime

from prometheus_client import Counter

from amem.core.model import utcnow
from amem.core.store import NoteStore

log = logging.getLogger(__name__)

FLUSHES = Counter(
    "amem_access_flushes_total", "Flushes of retrieval counts to the store", ["outcome"]
)


class AccessRecorder:
    def __init__(self, store: NoteStore, *, flush_s: float = 10.0) -> None:
        self._store = store
        self._flush_s = flush_s
        # tenant -> note id -> (retrievals, last access)
        self._pending: dict[str, dict[str, tuple[int, datetime]]] = defaultdict(dict)
        self._task: asyncio.Task | None = None

    def record(self, tenant: str, ids: list[str]) -> None:
        now = utcnow()
        counts = self._pending[tenant]
        for note_id in ids:
            seen, _ = counts.get(note_id, (0, now))
            counts[note_id] = (seen + 1, now)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="access-recorder")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()

    async def flush(self) -> None:
        pending, self._pending = self._pending, defaultdict(dict)
        for tenant, counts in pending.items():
            try:
                notes = await self._store.get_many(tenant, list(counts))
                for note in notes:
                    seen, when = counts[note.id]
                    note.retrieval_count += seen
                    note.last_accessed = max(note.last_accessed, when)
                await self._store.update_fields(tenant, notes, {"retrieval_count", "last_accessed"})
                FLUSHES.labels("ok").inc()
            except Exception:  # the store is away: these counts are lost, searches go on
                FLUSHES.labels("failed").inc()
                log.warning("could not record %d retrievals", len(counts), exc_info=True)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
