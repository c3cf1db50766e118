"""The seam where the evolution service plugs in.

Notes are stored with status `pending`, and that status in ChromaDB is the durable record of
work to do: an evolution worker that restarts finds pending notes by querying for them, so
nothing depends on this in-process hook having been called. The hook only makes new work
visible sooner (for example by a gRPC call to the evolution service).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from amem.core.errors import AmemError
from amem.core.evolution_client import EvolutionClient

log = logging.getLogger(__name__)


class EvolutionHook(Protocol):
    async def notes_changed(self, tenant: str, note_ids: Sequence[str]) -> None: ...


class NoEvolution:
    """No evolution service configured: notes stay `pending` until one runs."""

    async def notes_changed(self, tenant: str, note_ids: Sequence[str]) -> None:
        log.debug("no evolution service: %d notes left pending", len(note_ids))


class NotifyEvolution:
    """Tells the evolution service about new pending notes. A failure only delays the work
    until the service's next scan, so it is logged, never raised to the API caller."""

    def __init__(self, client: EvolutionClient) -> None:
        self._client = client

    async def notes_changed(self, tenant: str, note_ids: Sequence[str]) -> None:
        try:
            await self._client.notify(tenant, note_ids)
        except AmemError as exc:
            log.warning("evolution notify failed (the scan will pick the notes up): %s", exc)
