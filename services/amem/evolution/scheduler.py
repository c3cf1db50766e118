"""Who evolves what, when: tenant ownership across replicas and per-tenant serialisation.

Each tenant belongs to one replica, chosen by rendezvous hashing over the replica indices, so
every replica agrees on the owner without talking, and a change in the replica count moves
only the tenants of the replicas that came or went. The owner runs one task per tenant that
evolves that tenant's notes one at a time: two evolutions never race on the same neighbour.

Work comes from Notify calls (fast path) and from a periodic scan for pending notes (the
durable path: after a crash, a lost Notify or an ownership change).

Each note's evolution is a trace of its own (span `evolution.evolve`); when the work came from
a Notify, the span links to the trace of the request that wrote the note.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from opentelemetry import trace
from prometheus_client import Gauge

from amem.core import tracing
from amem.core.errors import AmemError, Unavailable
from amem.evolution.engine import Engine
from amem.evolution.membership import Membership

log = logging.getLogger(__name__)

T = TypeVar("T")

QUEUE_DEPTH = Gauge("amem_evolution_queue_depth", "Notes queued for evolution on this replica.")
TENANTS = Gauge("amem_evolution_tenants", "Tenants with queued work on this replica.")


def owner_of(tenant: str, replicas: int) -> int:
    """Rendezvous (highest random weight) hashing of a tenant onto replica indices."""
    if replicas <= 1:
        return 0
    return max(
        range(replicas),
        key=lambda i: hashlib.sha256(f"{tenant}\x00{i}".encode()).digest(),
    )


class _TenantQueue:
    def __init__(self) -> None:
        # Queued, not yet started, in order; each with the trace context that asked for it.
        self.ids: dict[str, trace.SpanContext | None] = {}
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        *,
        membership: Membership,
        scan_interval_s: float,
        list_tenants: Callable[[], Awaitable[list[str]]],
    ) -> None:
        self._engine = engine
        self._membership = membership
        self._scan_interval = scan_interval_s
        self._list_tenants = list_tenants
        self._queues: dict[str, _TenantQueue] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._scanner: asyncio.Task[None] | None = None
        self._stopping = False
        self.idle = asyncio.Event()  # set while nothing is queued or running

    @property
    def index(self) -> int:
        return self._membership.index

    def owner(self, tenant: str) -> int:
        return owner_of(tenant, self._membership.replicas)

    def owns(self, tenant: str) -> bool:
        return self.owner(tenant) == self.index

    def start(self) -> None:
        self._scanner = asyncio.create_task(self._scan_forever(), name="evolution-scan")

    async def stop(self) -> None:
        """Stop taking work, let each tenant task finish the note it is on, and return."""
        self._stopping = True
        if self._scanner:
            self._scanner.cancel()
        for q in self._queues.values():
            q.ids.clear()
            q.wakeup.set()
        tasks = [q.task for q in self._queues.values() if q.task]
        await asyncio.gather(*tasks, return_exceptions=True)

    def enqueue(
        self, tenant: str, note_ids: list[str], *, origin: trace.SpanContext | None = None
    ) -> None:
        if self._stopping:
            return
        q = self._queues.get(tenant)
        if q is None:
            q = self._queues[tenant] = _TenantQueue()
        for note_id in note_ids:
            if q.ids.get(note_id) is None:
                q.ids[note_id] = origin
        q.wakeup.set()
        if q.task is None or q.task.done():
            q.task = asyncio.create_task(self._drain(tenant, q), name=f"evolve-{tenant}")
        self._update_gauges()

    def _update_gauges(self) -> None:
        depth = sum(len(q.ids) for q in self._queues.values())
        QUEUE_DEPTH.set(depth)
        TENANTS.set(sum(1 for q in self._queues.values() if q.ids))
        running = any(q.task and not q.task.done() for q in self._queues.values())
        if depth == 0 and not running:
            self.idle.set()
        else:
            self.idle.clear()

    async def _drain(self, tenant: str, q: _TenantQueue) -> None:
        try:
            while q.ids and not self._stopping:
                if not self.owns(tenant):  # the replicas changed: the new owner's scan takes over
                    q.ids.clear()
                    break
                note_id = next(iter(q.ids))
                origin = q.ids.pop(note_id)
                self._update_gauges()
                links = [trace.Link(origin)] if origin is not None and origin.is_valid else []
                try:
                    with tracing.tracer.start_as_current_span(
                        "evolution.evolve",
                        context=trace.set_span_in_context(trace.INVALID_SPAN),
                        links=links,
                        attributes={"amem.tenant": tenant, "amem.note_id": note_id},
                    ) as span:
                        async with self._lock(tenant):
                            outcome = await self._engine.process(tenant, note_id)
                        span.set_attribute("amem.outcome", outcome)
                        log.debug("note evolution outcome: %s", outcome)
                except Unavailable as exc:
                    # A dependency is down: the note stays pending and the next scan retries it.
                    log.warning("evolution deferred, dependency unavailable: %s", exc)
                    q.ids.clear()
                    break
                except AmemError as exc:
                    log.warning("evolution of a note failed: %s", exc)
                except Exception:
                    log.exception("evolution of a note crashed; it stays pending")
        finally:
            q.task = None
            if not q.ids:
                self._queues.pop(tenant, None)
            self._update_gauges()

    def _lock(self, tenant: str) -> asyncio.Lock:
        lock = self._locks.get(tenant)
        if lock is None:
            lock = self._locks[tenant] = asyncio.Lock()
        return lock

    async def run_exclusive(self, tenant: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` for `tenant` between two of its evolutions, never during one."""
        async with self._lock(tenant):
            return await work()

    async def scan_once(self) -> int:
        """Queue the pending notes of every owned tenant; returns how many were queued."""
        queued = 0
        for tenant in await self._list_tenants():
            if not self.owns(tenant):
                continue
            ids = await self._engine.pending(tenant, limit=1000)
            if ids:
                self.enqueue(tenant, ids)
                queued += len(ids)
        return queued

    async def _scan_forever(self) -> None:
        while not self._stopping:
            try:
                found = await self.scan_once()
                if found:
                    log.info("scan queued %d pending notes", found)
            except AmemError as exc:
                log.warning("scan for pending notes failed: %s", exc)
            except Exception:
                log.exception("scan for pending notes crashed")
            await asyncio.sleep(self._scan_interval)
