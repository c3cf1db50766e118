"""The seam where the evolution service plugs in.

Notes are stored with status `pending`, and that status in ChromaDB is the durable record of
work to do: an evolution worker that restarts finds pending notes by querying for them, so
nothing depends on this in-process hook having been called. The hook only makes new work
visible sooner (for example by a gRPC call to the evolution service).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from amem.core.errors import AmemError
from amem.evolution.client import EvolutionClient

log = logging.getLogger(__name__)


class EvolutionHook(Protocol):
    async def notes_changed(self, tenant: str, note_ids: Sequence[str]) -> None: ...


class NoEvolution:
    """No evolution service configured: notes stay `pending` until one runs."""

    async def notes_changed(self, tenant: str, note_ids: Sequence[str]) -> None:
        log.debug("no evolution service: %d notes left pending", len(note_ids))


class NotifyEvolution:
    """Tells the evolution service about new pending notes, in the background: the write is
    durable already, and a failed or slow notify only delays the work until the service's
    next scan, so the API caller never waits for it and never sees its errors."""

    def __init__(self, client: EvolutionClient) -> None:
        self._client = client
        self._pending: set[asyncio.Task[None]] = set()

    async def notes_changed(self, tenant: str, note_ids: Sequence[str]) -> None:
        task = asyncio.create_task(self._notify(tenant, list(note_ids)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _notify(self, tenant: str, note_ids: list[str]) -> None:
        try:
            await self._client.notify(tenant, note_ids)
        except AmemError as exc:
            log.warning("evolution notify failed (the scan will pick the notes up): %s", exc)

    async def close(self) -> None:
        """Let the notifies in flight finish (each is bounded by the client's deadline)."""
        await asyncio.gather(*self._pending, return_exceptions=True)
