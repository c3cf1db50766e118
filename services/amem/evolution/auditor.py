"""The periodic, sampled audit of the store's vector index (core/repair.py) over the tenants
this replica owns: a few notes of each tenant, every `interval_s`, queried with their own
stored vector. What it finds goes to a gauge (alert on it) and to the log, naming the tenant
to repair with `amem reindex --tenant T`; `amem doctor` checks every note on demand.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

from amem.core import repair
from amem.core.errors import AmemError
from amem.core.store import NoteStore

log = logging.getLogger(__name__)

UNREACHABLE = Gauge(
    "amem_store_unreachable_notes",
    "Notes that a query with their own stored vector did not find, in the last sampled audit "
    "of the tenants this replica owns (repair: amem reindex --tenant T; the log names it).",
)
AUDITED = Counter(
    "amem_store_audited_notes_total",
    "Notes checked by the sampled audit, by outcome (reachable, unreachable, undetermined).",
    ["outcome"],
)


async def audit_forever(
    store: NoteStore,
    owns: Callable[[str], bool],
    *,
    interval_s: float,
    sample: int,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    while True:
        await sleep(interval_s)
        try:
            await audit_once(store, owns, sample=sample)
        except AmemError as exc:
            log.warning("sampled audit of the store failed: %s", exc)
        except Exception:
            log.exception("sampled audit of the store crashed")


async def audit_once(store: NoteStore, owns: Callable[[str], bool], *, sample: int) -> int:
    """Audit a sample of each owned tenant; returns the unreachable notes found."""
    found = 0
    for tenant in await store.tenants():
        if not owns(tenant):
            continue
        result = await repair.audit(store, tenant, await repair.sample(store, tenant, sample))
        bad = len(result.unreachable)
        AUDITED.labels("reachable").inc(result.checked - bad - len(result.undetermined))
        AUDITED.labels("unreachable").inc(bad)
        AUDITED.labels("undetermined").inc(len(result.undetermined))
        if bad:
            log.warning(
                "notes unreachable by their own vector; repair with: amem reindex --tenant %s",
                tenant,
                extra={"tenant": tenant, "unreachable": bad, "sampled": result.checked},
            )
        found += bad
    UNREACHABLE.set(found)
    return found
