"""The Chroma record codec: a note as one record, a filter as a where clause, times as
integer microseconds.

A note is one Chroma record: the document is the note's content, the embedding is supplied by
the caller (the embedding service), and every other field is metadata. Chroma keeps string
arrays as arrays (order and duplicates intact) but refuses empty ones, so an empty list is
stored as an absent key, and setting a key to None removes it (Chroma merges metadata on
upsert). Timestamps are integer microseconds since the epoch so that range filters work and
the value round-trips exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from amem.core.model import EvolutionStatus, HistoryEntry, Note, NoteFilter, Plan

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LIST_FIELDS = ("keywords", "links", "tags", "influenced_by")
_TIME_FIELDS = ("timestamp", "last_accessed", "created_at", "updated_at")
# Chroma's $or/$in take lists; keep each filter small enough for a quick plan.
ID_CHUNK = 100
_HISTORY = TypeAdapter(list[HistoryEntry])


def to_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


_MIN_US = to_micros(datetime.min.replace(tzinfo=UTC))
_MAX_US = to_micros(datetime.max.replace(tzinfo=UTC))


def from_micros(value: int) -> datetime:
    """The stored instant; clamped to the datetime range, so a note stored out of it by a
    version that did not check (year 0 once got in) can still be read, changed and erased."""
    return _EPOCH + min(max(value, _MIN_US), _MAX_US) * _MICROSECOND


def to_metadata(note: Note) -> dict[str, Any]:
    meta: dict[str, Any] = {name: getattr(note, name) or None for name in _LIST_FIELDS}
    meta.update({name: to_micros(getattr(note, name)) for name in _TIME_FIELDS})
    meta.update(
        context=note.context,
        category=note.category,
        retrieval_count=note.retrieval_count,
        evolution_history=_HISTORY.dump_json(note.evolution_history).decode(),
        user_id=note.user_id,
        agent_id=note.agent_id,
        follows=note.follows,
        metadata=json.dumps(note.metadata, separators=(",", ":")),
        status=note.status.value,
        status_reason=note.status_reason,
        version=note.version,
        plan=None if note.plan is None else _plan_json(note.plan),
        idempotency=note.idempotency,
    )
    return meta


def _plan_json(plan: Plan) -> str:
    """The plan with every key, as versions before it was typed wrote it and still read it
    (during a rolling upgrade the owner of a tenant may be one of them): a plan journalled
    without a `base` is written back without one, not with a null."""
    return plan.model_dump_json(exclude={"base"} if plan.base is None else None)


def from_record(note_id: str, document: str, meta: dict[str, Any]) -> Note:
    return Note(
        id=note_id,
        content=document,
        **{name: list(meta.get(name) or []) for name in _LIST_FIELDS},
        **{name: from_micros(meta[name]) for name in _TIME_FIELDS},
        context=meta.get("context", ""),
        category=meta.get("category", ""),
        retrieval_count=meta.get("retrieval_count", 0),
        evolution_history=_HISTORY.validate_json(meta.get("evolution_history") or "[]"),
        user_id=meta.get("user_id"),
        agent_id=meta.get("agent_id"),
        follows=meta.get("follows"),
        metadata=json.loads(meta.get("metadata") or "{}"),
        status=EvolutionStatus(meta.get("status", EvolutionStatus.PENDING)),
        status_reason=meta.get("status_reason"),
        version=meta.get("version", 1),
        plan=Plan.model_validate_json(meta["plan"]) if meta.get("plan") else None,
        idempotency=meta.get("idempotency"),
    )


def to_where(flt: NoteFilter | None) -> dict[str, Any] | None:
    """Chroma's where clause for a filter; None when nothing is filtered."""
    if flt is None:
        return None
    clauses: list[dict[str, Any]] = []
    for name in ("user_id", "agent_id", "category"):
        value = getattr(flt, name)
        if value is not None:
            clauses.append({name: value})
    if flt.status is not None:
        clauses.append({"status": flt.status.value})
    if flt.tag is not None:
        clauses.append({"tags": {"$contains": flt.tag}})
    if flt.since is not None:
        clauses.append({"timestamp": {"$gte": to_micros(flt.since)}})
    if flt.until is not None:
        clauses.append({"timestamp": {"$lt": to_micros(flt.until)}})
    return conjoin(clauses, "$and")


def conjoin(clauses: list[dict[str, Any]], op: str) -> dict[str, Any] | None:
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {op: clauses}


def chunks(items: Sequence[str], size: int = ID_CHUNK) -> Iterable[Sequence[str]]:
    """`items` in requests of a size ChromaDB takes. Callers bound each chunk's call by the
    deadline, not all of them together: a read of many ids takes as long as it must."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def notes_of(got: Any) -> list[Note]:
    """The notes in a Chroma `get` result (with documents and metadatas)."""
    return [
        from_record(i, d, m)
        for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    ]
