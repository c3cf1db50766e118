"""Group commit: concurrent writes to one tenant share one ChromaDB upsert.

ChromaDB commits each upsert on its own (a SQLite transaction and a log write), so single-note
writes arriving together queue behind each other's commits. Here the first write to a tenant
goes to the store at once; writes that arrive while it runs wait and then go together in one
upsert (up to `max_notes`). A lone write waits for nothing; each caller is answered only once
the upsert holding its notes is durable, and if that upsert fails every caller in it gets the
error (nothing of theirs was acknowledged).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Histogram

from amem.core.model import Note
from amem.core.store import NoteStore

COMMIT_NOTES = Histogram(
    "amem_gateway_commit_notes",
    "Notes per ChromaDB upsert made by the gateway's group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)


@dataclass
class _Write:
    notes: Sequence[Note]
    vectors: Sequence[Sequence[float]]
    done: asyncio.Future[None]


class GroupCommit:
    def __init__(self, store: NoteStore, *, max_notes: int = 1_000) -> None:
        self._store = store
        self._max_notes = max_notes
        self._waiting: dict[str, list[_Write]] = {}
        self._committing: dict[str, asyncio.Task[None]] = {}

    async def put(
        self, tenant: str, notes: Sequence[Note], vectors: Sequence[Sequence[float]]
    ) -> None:
        write = _Write(notes, vectors, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(tenant, []).append(write)
        if tenant not in self._committing:
            self._committing[tenant] = asyncio.create_task(self._commit(tenant))
        await asyncio.shield(write.done)

    def _take(self, tenant: str) -> list[_Write]:
        waiting = self._waiting.get(tenant, [])
        taken, size = [], 0
        while waiting and (not taken or size + len(waiting[0].notes) <= self._max_notes):
            write = waiting.pop(0)
            taken.append(write)
            size += len(write.notes)
        if not waiting:
            self._waiting.pop(tenant, None)
        return taken

    async def _commit(self, tenant: str) -> None:
        try:
            while writes := self._take(tenant):
                notes = [n for w in writes for n in w.notes]
                vectors = [v for w in writes for v in w.vectors]
                try:
                    await self._store.put(tenant, notes, vectors)
                except Exception as exc:  # noqa: BLE001 (each caller gets it)
                    for w in writes:
                        w.done.set_exception(exc)
                    continue
                COMMIT_NOTES.observe(len(notes))
                for w in writes:
                    w.done.set_result(None)
        finally:
            del self._committing[tenant]
