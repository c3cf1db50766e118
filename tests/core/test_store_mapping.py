"""Unit tests of the note <-> Chroma record mapping (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from amem.core.model import EvolutionStatus, Note, NoteFilter
from amem.core.store import from_micros, from_record, to_metadata, to_micros, to_where


def test_every_field_round_trips():
    note = Note(
        content="c",
        keywords=["b", "a", "b"],
        links=["x"],
        tags=["t"],
        context="ctx",
        category="cat",
        timestamp=datetime(2001, 2, 3, 4, 5, 6, 789012, UTC),
        retrieval_count=7,
        evolution_history=[{"by": "n1", "before": {"tags": []}, "after": {"tags": ["t"]}}],
        user_id="u",
        agent_id="a",
        metadata={"s": "v", "i": 1, "f": 0.5, "b": False, "n": None},
        status=EvolutionStatus.FAILED,
        status_reason="llm timed out",
        version=4,
    )
    assert from_record(note.id, note.content, to_metadata(note)) == note


def test_empty_lists_are_absent_keys_and_come_back_as_lists():
    meta = to_metadata(Note(content="c"))
    assert meta["keywords"] is None and meta["tags"] is None and meta["links"] is None
    back = from_record("id", "c", {k: v for k, v in meta.items() if v is not None})
    assert back.keywords == back.tags == back.links == []


def test_micros_are_exact_and_timezone_aware():
    t = datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    assert from_micros(to_micros(t)) == t
    assert from_micros(to_micros(t)).tzinfo == UTC


def test_where_clauses():
    assert to_where(None) is None
    assert to_where(NoteFilter()) is None
    assert to_where(NoteFilter(user_id="u")) == {"user_id": "u"}
    where = to_where(NoteFilter(user_id="u", tag="t", since=datetime(1970, 1, 1, tzinfo=UTC)))
    assert where == {
        "$and": [{"user_id": "u"}, {"tags": {"$contains": "t"}}, {"timestamp": {"$gte": 0}}]
    }
