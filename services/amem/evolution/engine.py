"""Evolving one note: construction, linking and evolution, applied exactly once.

For a pending note the engine
1. decides: fills the fields the caller left empty (construction), finds the nearest notes of
   the same tenant, and asks for links, refined tags and neighbour rewrites (evolution). Every
   id in the answer is checked against the neighbours actually shown; others are dropped. The
   plan records what it was decided from: the note's version and fields (`base`), and the
   version of each neighbour shown;
2. journals the decision as the note's `plan` before changing anything;
3. applies the plan: each neighbour rewrite (with a history entry that names the plan), then
   the note itself, which becomes `done` and drops its plan.
A worker that dies anywhere in between finds the note still pending with its plan and applies
the same plan again: neighbours whose history already holds the plan's entry are skipped, and
links are a set, so nothing is evolved twice and no link is added twice.

Every write is a compare-and-set under the tenant writer's lock (core/writer.py) on the
versions the plan was decided from, since the caller may change the note meanwhile (a PATCH,
a DELETE):
- the note changed but not its content: the plan is applied on top, and each field the caller
  changed since the decision keeps the caller's value (links the caller removed stay removed);
- its content changed: the plan is dropped and the note decided again;
- a neighbour shown to the decision was erased, or the note moved to another user: decided
  again (the plan may carry the erased text, or the other user's neighbours);
- a neighbour changed since it was shown: its rewrite is skipped (it was advice about text
  that is gone);
- links to notes erased meanwhile, and a `follows` naming one, are dropped at the last write.

The caller guarantees that one tenant's notes are evolved by one task at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from enum import Enum
from typing import Any

from prometheus_client import Counter

from amem.core import history
from amem.core.errors import NotFound
from amem.core.model import (
    EvolutionStatus,
    NeighbourUpdate,
    Note,
    NoteFilter,
    Plan,
    PlanBase,
    TokenUsage,
    utcnow,
)
from amem.core.quotas import DailyBudget, Quotas, UsageStore
from amem.core.store import NoteStore
from amem.core.writer import NoteWriter
from amem.embedding.client import EmbeddingClient
from amem.evolution.brain import Brain
from amem.evolution.llm import LLMError, Usage
from amem.evolution.prompts import PROMPT_VERSION

log = logging.getLogger(__name__)

OUTCOMES = Counter("amem_evolution_jobs_total", "Notes processed, by outcome.", ["outcome"])
REJECTED_IDS = Counter(
    "amem_evolution_rejected_ids_total",
    "Ids in LLM answers that were not among the neighbours shown (hallucinated), dropped.",
)
CONFLICTS = Counter(
    "amem_evolution_conflicts_total",
    "Evolution writes that found the note changed since the decision, by what was done: "
    "merge (applied, the caller's fields kept), replan (decided again), skip (a neighbour "
    "rewrite dropped).",
    ["resolution"],
)

_OWN_FIELDS = ("keywords", "context", "tags", "links")
_NEIGHBOUR_FIELDS = ("context", "tags")
# Decisions per note before it is left pending for the next scan (each conflict costs one).
_ROUNDS = 4


class _Again(Enum):
    MERGE = "merge"  # the note changed, not its content: apply the plan on top of it
    REPLAN = "replan"  # decide again


class Engine:
    def __init__(
        self,
        store: NoteStore,
        embedder: EmbeddingClient,
        brain: Brain,
        *,
        writer: NoteWriter,
        neighbours: int,
        quotas: Quotas | None = None,
        usage: UsageStore | None = None,
    ) -> None:
        """`quotas` and `usage` (given for an LLM brain) enforce each tenant's daily token
        budget: over it, notes stay pending until the next UTC day (core/quotas.py)."""
        self._store = store
        self._embedder = embedder
        self._brain = brain
        self._writer = writer
        self._k = neighbours
        self._budget = (
            DailyBudget(quotas, usage) if quotas is not None and usage is not None else None
        )
        # Vectors of embedding texts computed while deciding, for the write that follows.
        self._vectors: dict[str, list[float]] = {}

    async def process(self, tenant: str, note_id: str) -> str:
        """Evolve one note if it is pending; returns the outcome (for logs and metrics)."""
        try:
            note = await self._store.get(tenant, note_id)
        except NotFound:
            outcome = "gone"
        else:
            if note.status is not EvolutionStatus.PENDING:
                outcome = "skipped"
            elif self._budget and (reason := await self._budget.refusal(tenant)):
                if note.status_reason != reason:
                    deferred = note.model_copy(update={"status_reason": reason})
                    await self._commit(tenant, note, deferred, {"status_reason"})
                outcome = "deferred"
            else:
                outcome = await self._evolve(tenant, note)
        OUTCOMES.labels(outcome).inc()
        return outcome

    async def _evolve(self, tenant: str, note: Note) -> str:
        journaled = note.plan is not None  # the stored note holds this plan
        for _ in range(_ROUNDS):
            again: _Again | None = None
            if note.plan is None:
                try:
                    note = note.model_copy(update={"plan": await self._decide(tenant, note)})
                    journaled = False
                except LLMError as exc:
                    log.warning("evolution of a note failed: %s", exc)
                    update = {"status": EvolutionStatus.FAILED, "status_reason": str(exc)[:500]}
                    failed = note.model_copy(update=update)
                    if await self._commit(tenant, note, failed, {"status", "status_reason"}):
                        return "failed"
                    again = _Again.REPLAN
            if again is None:
                plan = note.plan
                assert plan is not None
                # Journal what can be half-applied: a plan that changes the note alone is
                # applied in one write, and a crash before it just decides again.
                if plan.neighbour_updates and not journaled:
                    journaled = await self._commit(tenant, note, note, {"plan"}, bump=False)
                    again = None if journaled else _Again.MERGE
                if again is None:
                    again = await self._apply(tenant, note, plan)
            if again is None:
                return "done"
            CONFLICTS.labels(again.value).inc()
            try:
                fresh = await self._store.get(tenant, note.id)
            except NotFound:
                return "gone"
            if fresh.status is not EvolutionStatus.PENDING:
                return "superseded"
            if again is _Again.REPLAN or fresh.content != note.content:
                if fresh.plan is not None:  # a journal of the old plan: it must not come back
                    cleared = fresh.model_copy(update={"plan": None})
                    if await self._commit(tenant, fresh, cleared, {"plan"}, bump=False):
                        fresh = cleared
                fresh.plan = None
            elif fresh.plan is None:
                fresh.plan, journaled = note.plan, False  # decided, not yet journalled
            else:
                journaled = True
            note = fresh
        log.warning("evolution of a note kept conflicting; it stays pending for the next scan")
        return "conflicted"

    async def _decide(self, tenant: str, note: Note) -> Plan:
        usage = Usage()
        construction: dict[str, Any] = {}
        missing = [f for f in ("keywords", "context", "tags") if not getattr(note, f)]
        if missing:
            before = await self._store.get_many(tenant, [note.follows]) if note.follows else []
            built, used = await self._brain.construct(tenant, note, before[0] if before else None)
            usage += used
            construction = {f: getattr(built, f) for f in missing}
        draft = note.model_copy(update=construction)

        embedded = await self._embedder.embed([draft.embedding_text()], background=True)
        self._remember_vector(draft.embedding_text(), embedded.vectors[0])
        # A user's notes evolve among that user's notes: evolution copies text into neighbours,
        # which must not carry one user's memories into another's.
        scope = NoteFilter(user_id=note.user_id) if note.user_id else None
        hits = await self._store.search(tenant, embedded.vectors[0], k=self._k + 1, flt=scope)
        neighbours = [h for h in hits if h.note.id != note.id][: self._k]
        links: list[str] = []
        tags = draft.tags
        updates: list[NeighbourUpdate] = []
        if neighbours:
            decision, used = await self._brain.evolve(tenant, draft, neighbours)
            usage += used
            shown = {n.note.id for n in neighbours}
            links = list(dict.fromkeys(_valid(decision.links, shown)))
            tags = list(dict.fromkeys(decision.tags)) or draft.tags
            seen: set[str] = set()
            for update in decision.neighbour_updates:
                if update.id not in shown:
                    REJECTED_IDS.inc()
                elif update.id not in seen:
                    seen.add(update.id)
                    updates.append(
                        NeighbourUpdate(id=update.id, context=update.context, tags=update.tags)
                    )
        if self._budget is not None:
            await self._budget.spend(tenant, usage.prompt_tokens + usage.completion_tokens)
        return Plan(
            trigger=note.id,
            model=self._brain.model,
            prompt_version=PROMPT_VERSION,
            usage=TokenUsage(
                prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens
            ),
            construction=construction,
            links=links,
            tags=tags,
            neighbour_updates=updates,
            neighbours_shown=[n.note.id for n in neighbours],
            base=PlanBase(
                version=note.version,
                user_id=note.user_id,
                **{f: getattr(note, f) for f in _OWN_FIELDS},
            ),
            shown_versions={n.note.id: n.note.version for n in neighbours},
        )

    async def _apply(self, tenant: str, note: Note, plan: Plan) -> _Again | None:
        """Apply `plan` to `note` (as read, with its version); None when done."""
        base = plan.base
        if base is not None and base.knows_user() and note.user_id != base.user_id:
            return _Again.REPLAN  # moved to another user: its neighbours were another's
        for update in plan.neighbour_updates:
            again = await self._apply_neighbour(tenant, note, plan, update)
            if again is not None:
                return again

        before = {f: getattr(note, f) for f in _OWN_FIELDS}
        base = {f: getattr(plan.base, f) for f in _OWN_FIELDS} if plan.base else dict(before)
        planned = {**base, **plan.construction}
        planned["tags"] = plan.tags or planned["tags"]
        after = {
            # A field the caller changed since the decision keeps the caller's value.
            f: before[f] if before[f] != base[f] else planned[f]
            for f in ("keywords", "context", "tags")
        }
        # Links the caller removed since the decision stay removed.
        removed = set(base["links"]) - set(before["links"])
        after["links"] = list(
            dict.fromkeys([*note.links, *(i for i in plan.links if i not in removed)])
        )
        updated = note.model_copy(update=after)
        vector = await self._vector(note, updated)
        shown = plan.neighbours_shown
        async with self._writer.locked(tenant):
            wanted = [note.id, *after["links"], *shown, *([note.follows] if note.follows else [])]
            current = {n.id: n for n in await self._store.get_many(tenant, wanted)}
            if note.id not in current or current[note.id].version != note.version:
                return _Again.MERGE
            if any(i not in current for i in shown):
                return _Again.REPLAN  # an erased note was shown: its text may be in the plan
            updated.links = [i for i in after["links"] if i in current]
            if note.follows is not None and note.follows not in current:
                updated.follows = None
            changed = {f for f in _OWN_FIELDS if getattr(updated, f) != before[f]}
            if changed:
                history.append(
                    updated,
                    plan.entry(
                        "evolve",
                        {f: before[f] for f in sorted(changed)},
                        {f: getattr(updated, f) for f in sorted(changed)},
                        tokens=plan.usage,
                    ),
                )
            updated.status, updated.status_reason, updated.plan = EvolutionStatus.DONE, None, None
            fields = {*changed, "follows", "evolution_history", "status", "status_reason", "plan"}
            await self._write(tenant, note, updated, fields, vector)
        return None

    async def _apply_neighbour(
        self, tenant: str, note: Note, plan: Plan, update: NeighbourUpdate
    ) -> _Again | None:
        try:
            neighbour = await self._store.get(tenant, update.id)
        except NotFound:
            return None  # deleted since the decision
        if any(e.plan == plan.id for e in neighbour.evolution_history):
            return None  # applied before a restart
        shown_version = plan.shown_versions.get(neighbour.id, neighbour.version)
        if neighbour.version != shown_version:
            CONFLICTS.labels("skip").inc()
            return None  # changed since it was shown: the rewrite was about other text
        before = {f: getattr(neighbour, f) for f in _NEIGHBOUR_FIELDS}
        # An update without a context or tags keeps the neighbour's, as a reply without tags
        # keeps the new note's: a small model's empty list is no reason to erase them.
        after = {
            "context": update.context or before["context"],
            "tags": list(dict.fromkeys(update.tags)) or before["tags"],
        }
        if after == before:
            return None
        updated = neighbour.model_copy(update=after)
        updated.influenced_by = list(dict.fromkeys([*neighbour.influenced_by, plan.trigger]))
        history.append(updated, plan.entry("update_neighbor", before, after))
        vector = await self._vector(neighbour, updated)
        shown = plan.neighbours_shown
        async with self._writer.locked(tenant):
            wanted = [note.id, neighbour.id, *shown]
            current = {n.id: n for n in await self._store.get_many(tenant, wanted)}
            if note.id not in current or current[note.id].version != note.version:
                return _Again.MERGE  # the note changed: this rewrite may be stale
            if any(i not in current for i in shown):
                return _Again.REPLAN  # an erased note was shown: the rewrite may carry its text
            if current.get(neighbour.id) is None or current[neighbour.id].version != shown_version:
                CONFLICTS.labels("skip").inc()
                return None
            fields = {*_NEIGHBOUR_FIELDS, "evolution_history", "influenced_by"}
            await self._write(tenant, neighbour, updated, fields, vector)
        return None

    def _remember_vector(self, text: str, vector: list[float]) -> None:
        self._vectors[text] = vector
        while len(self._vectors) > 64:
            self._vectors.pop(next(iter(self._vectors)))

    async def _vector(self, before: Note, after: Note) -> list[float] | None:
        """The vector of `after`'s embedded text, if it differs from `before`'s (the one computed
        for the neighbour search when the text is the same), else None."""
        text = after.embedding_text()
        if text == before.embedding_text():
            return None
        cached = self._vectors.pop(text, None)
        if cached is not None:
            return cached
        return (await self._embedder.embed([text], background=True)).vectors[0]

    async def _write(
        self, tenant: str, before: Note, after: Note, fields: set[str], vector: list[float] | None
    ) -> None:
        """Store `fields` of `after` as the version after `before`'s (the caller holds the
        tenant's lock and has checked that `before` is current). Only those fields are
        written, so fields nobody changed are never rewritten from a stale copy."""
        after.version = before.version + 1
        after.updated_at = utcnow()
        await self._store.update_fields(
            tenant,
            [after],
            {*fields, "version", "updated_at"},
            embeddings=None if vector is None else [vector],
        )

    async def _commit(
        self, tenant: str, before: Note, after: Note, fields: set[str], *, bump: bool = True
    ) -> bool:
        """Write `fields` of `after` if the stored note is still at `before`'s version (a
        compare-and-set); False when it is not, or is gone. Without `bump` (the journal), the
        version stays: the plan is bookkeeping, not a change a caller would see."""
        vector = await self._vector(before, after)
        async with self._writer.locked(tenant):
            [current] = await self._store.get_many(tenant, [before.id]) or [None]
            if current is None or current.version != before.version:
                return False
            if bump:
                await self._write(tenant, before, after, fields, vector)
            else:
                await self._store.update_fields(tenant, [after], fields)
        return True

    async def revert(self, tenant: str, note_id: str, entry_id: str) -> Note:
        """Undo one history entry (`history.revert`: its rules) and store the result."""
        async with self._writer.locked(tenant):
            note = await self._store.get(tenant, note_id)
            updated = history.revert(note, entry_id)
            text = updated.embedding_text()
            vector = (
                (await self._embedder.embed([text])).vectors[0]
                if text != note.embedding_text()
                else None
            )
            restored = updated.evolution_history[-1].after
            await self._write(tenant, note, updated, {*restored, "evolution_history"}, vector)
        return updated

    async def pending(self, tenant: str, limit: int) -> list[str]:
        if self._budget is not None and self._budget.spent_today(tenant):
            return []  # its budget is spent: no point in reading its pending notes again today
        return await self._store.ids_where(
            tenant, NoteFilter(status=EvolutionStatus.PENDING), limit=limit
        )


def _valid(ids: Iterable[str], shown: set[str]) -> list[str]:
    kept = []
    for i in ids:
        if i in shown:
            kept.append(i)
        else:
            REJECTED_IDS.inc()
    return kept
