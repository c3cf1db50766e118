"""Evolving one note: construction, linking and evolution, applied exactly once.

For a pending note the engine
1. decides: fills the fields the caller left empty (construction), finds the nearest notes of
   the same tenant, and asks for links, refined tags and neighbour rewrites (evolution). Every
   id in the answer is checked against the neighbours actually shown; others are dropped.
2. journals the decision as the note's `plan` before changing anything;
3. applies the plan: each neighbour rewrite (with a history entry that names the plan), then
   the note itself, which becomes `done` and drops its plan.
A worker that dies anywhere in between finds the note still pending with its plan and applies
the same plan again: neighbours whose history already holds the plan's entry are skipped, and
links are a set, so nothing is evolved twice and no link is added twice.

The caller guarantees that one tenant's notes are evolved by one task at a time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any

from prometheus_client import Counter

from amem.core.embedding_client import EmbeddingClient
from amem.core.errors import Conflict, NotFound
from amem.core.model import EvolutionStatus, Note, NoteFilter, utcnow
from amem.core.quotas import Quotas, UsageStore, next_day_start, today
from amem.core.store import NoteStore
from amem.evolution.brain import Brain
from amem.evolution.llm import LLMError, Usage
from amem.evolution.prompts import PROMPT_VERSION

log = logging.getLogger(__name__)

OUTCOMES = Counter("amem_evolution_jobs_total", "Notes processed, by outcome.", ["outcome"])
REJECTED_IDS = Counter(
    "amem_evolution_rejected_ids_total",
    "Ids in LLM answers that were not among the neighbours shown (hallucinated), dropped.",
)

_OWN_FIELDS = ("keywords", "context", "tags", "links")
_NEIGHBOUR_FIELDS = ("context", "tags")
_MAX_HISTORY = 200  # entries kept per note; the oldest are dropped beyond this


def _history_entry(
    plan: dict[str, Any], kind: str, before: dict[str, Any], after: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "plan": plan["id"],
        "kind": kind,
        "trigger": plan["trigger"],
        "before": before,
        "after": after,
        "model": plan["model"],
        "prompt_version": plan["prompt_version"],
        "at": utcnow().isoformat(),
        **extra,
    }


def _append_history(note: Note, entry: dict[str, Any]) -> None:
    note.evolution_history = [*note.evolution_history, entry][-_MAX_HISTORY:]


class Engine:
    def __init__(
        self,
        store: NoteStore,
        embedder: EmbeddingClient,
        brain: Brain,
        *,
        neighbours: int,
        quotas: Quotas | None = None,
        usage: UsageStore | None = None,
    ) -> None:
        """`quotas` and `usage` (given for an LLM brain) enforce each tenant's daily token
        budget: over it, notes stay pending until the next UTC day (core/quotas.py)."""
        self._store = store
        self._embedder = embedder
        self._brain = brain
        self._k = neighbours
        self._quotas = quotas
        self._usage = usage
        self._paused: dict[str, date] = {}  # tenants whose budget for that day is spent
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
            elif reason := await self._over_budget(tenant):
                if note.status_reason != reason:
                    deferred = note.model_copy(update={"status_reason": reason})
                    await self._write(tenant, note, deferred, {"status_reason"})
                outcome = "deferred"
            else:
                outcome = await self._evolve(tenant, note)
        OUTCOMES.labels(outcome).inc()
        return outcome

    async def _over_budget(self, tenant: str) -> str | None:
        """Why `tenant` may not spend LLM tokens today, or None."""
        if self._quotas is None or self._usage is None:
            return None
        budget = self._quotas.for_tenant(tenant).llm_tokens_per_day
        if budget is None:
            return None
        day = today()
        spent = await self._usage.tokens(tenant, day)
        if spent < budget:
            self._paused.pop(tenant, None)
            return None
        self._paused[tenant] = day
        return (
            f"deferred: the LLM budget of {budget} tokens for {day.isoformat()} is spent; "
            f"evolution resumes after {next_day_start(day).isoformat()}"
        )

    async def _evolve(self, tenant: str, note: Note) -> str:
        if note.plan is None:
            try:
                note.plan = await self._decide(tenant, note)
            except LLMError as exc:
                await self._fail(tenant, note, str(exc))
                return "failed"
            if note.plan["neighbour_updates"]:
                # Journal only what can be half-applied: a plan that changes the note alone is
                # applied in one write, and a crash before it just decides again.
                await self._store.update_fields(tenant, [note], {"plan"})
        await self._apply(tenant, note, note.plan)
        return "done"

    async def _decide(self, tenant: str, note: Note) -> dict[str, Any]:
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
        updates: list[dict[str, Any]] = []
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
                        {"id": update.id, "context": update.context, "tags": update.tags}
                    )
        if self._usage is not None and usage.prompt_tokens + usage.completion_tokens:
            await self._usage.add(tenant, today(), usage.prompt_tokens + usage.completion_tokens)
        return {
            "id": str(uuid.uuid4()),
            "trigger": note.id,
            "model": self._brain.model,
            "prompt_version": PROMPT_VERSION,
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
            },
            "construction": construction,
            "links": links,
            "tags": tags,
            "neighbour_updates": updates,
            "neighbours_shown": [n.note.id for n in neighbours],
        }

    async def _apply(self, tenant: str, note: Note, plan: dict[str, Any]) -> None:
        for update in plan["neighbour_updates"]:
            await self._apply_neighbour(tenant, plan, update)

        before = {f: getattr(note, f) for f in _OWN_FIELDS}
        after = dict(before)
        after.update(plan["construction"])
        after["tags"] = plan["tags"] or after["tags"]
        after["links"] = list(dict.fromkeys([*note.links, *plan["links"]]))
        changed = {f for f in _OWN_FIELDS if after[f] != before[f]}
        updated = note.model_copy(update=after)
        if changed:
            _append_history(
                updated,
                _history_entry(
                    plan,
                    "evolve",
                    {f: before[f] for f in sorted(changed)},
                    {f: after[f] for f in sorted(changed)},
                    tokens=plan["usage"],
                ),
            )
        updated.status, updated.status_reason, updated.plan = EvolutionStatus.DONE, None, None
        await self._write(
            tenant,
            note,
            updated,
            {*changed, "evolution_history", "status", "status_reason", "plan"},
        )

    async def _apply_neighbour(
        self, tenant: str, plan: dict[str, Any], update: dict[str, Any]
    ) -> None:
        try:
            neighbour = await self._store.get(tenant, update["id"])
        except NotFound:
            return  # deleted since the decision
        if any(e.get("plan") == plan["id"] for e in neighbour.evolution_history):
            return  # applied before a restart
        before = {f: getattr(neighbour, f) for f in _NEIGHBOUR_FIELDS}
        # An update without a context or tags keeps the neighbour's, as a reply without tags
        # keeps the new note's: a small model's empty list is no reason to erase them.
        after = {
            "context": update["context"] or before["context"],
            "tags": list(dict.fromkeys(update["tags"])) or before["tags"],
        }
        if after == before:
            return
        updated = neighbour.model_copy(update=after)
        updated.influenced_by = list(dict.fromkeys([*neighbour.influenced_by, plan["trigger"]]))
        _append_history(updated, _history_entry(plan, "update_neighbor", before, after))
        await self._write(
            tenant, neighbour, updated, {*_NEIGHBOUR_FIELDS, "evolution_history", "influenced_by"}
        )

    def _remember_vector(self, text: str, vector: list[float]) -> None:
        self._vectors[text] = vector
        while len(self._vectors) > 64:
            self._vectors.pop(next(iter(self._vectors)))

    async def _write(self, tenant: str, before: Note, after: Note, fields: Iterable[str]) -> None:
        """Store `fields` of `after` as a new version, re-embedding when the embedded text
        changed (reusing the vector computed for the neighbour search when the text is the
        same). Only those fields are written, so a concurrent writer's others survive."""
        after.version = before.version + 1
        after.updated_at = utcnow()
        vectors = None
        text = after.embedding_text()
        if text != before.embedding_text():
            cached = self._vectors.pop(text, None)
            vectors = (
                [cached]
                if cached is not None
                else (await self._embedder.embed([text], background=True)).vectors
            )
        await self._store.update_fields(
            tenant, [after], {*fields, "version", "updated_at"}, embeddings=vectors
        )

    async def _fail(self, tenant: str, note: Note, reason: str) -> None:
        log.warning("evolution of a note failed: %s", reason)
        failed = note.model_copy(
            update={"status": EvolutionStatus.FAILED, "status_reason": reason[:500]}
        )
        await self._write(tenant, note, failed, {"status", "status_reason"})

    async def revert(self, tenant: str, note_id: str, entry_id: str) -> Note:
        """Undo one history entry: restore its `before` values if the fields still hold its
        `after` values (else Conflict), and record the revert as a new entry."""
        note = await self._store.get(tenant, note_id)
        entry = next((e for e in note.evolution_history if e.get("id") == entry_id), None)
        if entry is None:
            raise NotFound(f"history entry {entry_id!r} not found on memory {note_id!r}")
        if entry.get("kind") == "revert":
            raise Conflict("a revert cannot itself be reverted; change the fields with PATCH")
        if entry.get("erased") or entry.get("kind") == "erasure":
            raise Conflict("this entry belongs to an erasure and cannot be reverted")
        if any(e.get("reverts") == entry_id for e in note.evolution_history):
            raise Conflict(f"history entry {entry_id!r} was already reverted")
        current = {f: getattr(note, f) for f in entry["after"]}
        if current != entry["after"]:
            raise Conflict(
                "the fields changed after this entry; revert the later entries first: "
                + ", ".join(sorted(f for f in current if current[f] != entry["after"][f]))
            )
        updated = note.model_copy(update=entry["before"])
        _append_history(
            updated,
            {
                "id": str(uuid.uuid4()),
                "kind": "revert",
                "reverts": entry_id,
                "trigger": entry.get("trigger"),
                "before": entry["after"],
                "after": entry["before"],
                "at": utcnow().isoformat(),
            },
        )
        await self._write(tenant, note, updated, {*entry["before"], "evolution_history"})
        return updated

    async def pending(self, tenant: str, limit: int) -> list[str]:
        if self._paused.get(tenant) == today():
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
