"""Unit tests of the note <-> Chroma record mapping (no server needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from amem.core.model import (
    EvolutionStatus,
    HistoryEntry,
    NeighbourUpdate,
    Note,
    NoteFilter,
    Plan,
    PlanBase,
    TokenUsage,
)
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
        evolution_history=[
            HistoryEntry(
                kind="update_neighbor",
                trigger="n1",
                before={"tags": []},
                after={"tags": ["t"]},
                plan="p1",
                model="offline",
                prompt_version="v1",
            ),
            HistoryEntry(kind="edit", after={"context": ""}, undone=[], edited_memories=["n1"]),
        ],
        user_id="u",
        agent_id="a",
        metadata={"s": "v", "i": 1, "f": 0.5, "b": False, "n": None},
        status=EvolutionStatus.FAILED,
        status_reason="llm timed out",
        version=4,
        plan=Plan(
            trigger="n2",
            model="offline",
            prompt_version="v1",
            usage=TokenUsage(prompt_tokens=3, completion_tokens=2),
            neighbour_updates=[NeighbourUpdate(id="n1", context="c", tags=["t"])],
            base=PlanBase(version=3, keywords=["k"]),
            shown_versions={"n1": 2},
        ),
        influenced_by=["n1"],
        follows="n0",
        idempotency="digest.0",
    )
    assert from_record(note.id, note.content, to_metadata(note)) == note


def test_history_is_stored_as_it_always_was():
    """Entries stored by earlier versions (dicts with an ISO time, keys a kind does not use
    absent) read back, and are written back without nulls beyond `trigger`."""
    stored = (
        '[{"id":"e1","kind":"evolve","trigger":"n1","before":{"tags":[]},"after":{"tags":["t"]},'
        '"at":"2026-12-01T10:00:00.000001+00:00","plan":"p","model":"m","prompt_version":"v",'
        '"tokens":{"prompt_tokens":5,"completion_tokens":7},"from_a_newer_version":1},'
        '{"id":"e2","kind":"erasure","trigger":null,"before":{},"after":{"context":""},'
        '"at":"2026-12-01T10:00:01+00:00","undone":["e1"],"erased_memories":["n1"]}]'
    )
    meta = to_metadata(Note(content="c"))
    note = from_record("id", "c", {**meta, "evolution_history": stored})
    evolve, erasure = note.evolution_history
    assert evolve.tokens == TokenUsage(prompt_tokens=5, completion_tokens=7)
    assert evolve.at == datetime(2026, 12, 1, 10, 0, 0, 1, UTC)
    assert erasure.undone == ["e1"] and erasure.erased is False
    again = json.loads(to_metadata(note)["evolution_history"])
    assert set(again[1]) == {
        "id",
        "kind",
        "trigger",
        "before",
        "after",
        "at",
        "undone",
        "erased_memories",
    }
    assert again[0]["from_a_newer_version"] == 1  # an unknown key is kept


def test_plans_are_stored_whole_as_earlier_versions_read_them():
    """Every key of a plan is written (an earlier version, owning a tenant during a rolling
    upgrade, reads them without defaults); a plan without a base gets no null one; a base
    journalled before the user was recorded stays without one, so it is not taken for a
    plan decided for no user (which would decide again a note that has a user)."""
    meta = to_metadata(Note(content="c"))
    fresh = Plan(
        trigger="n2",
        model="offline",
        prompt_version="v1",
        neighbour_updates=[NeighbourUpdate(id="n1")],
        base=PlanBase(version=1, user_id=None),
    )
    stored = json.loads(to_metadata(Note(content="c", plan=fresh))["plan"])
    assert stored["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    assert stored["construction"] == {} and stored["links"] == [] and stored["tags"] == []
    assert stored["neighbour_updates"] == [{"id": "n1", "context": "", "tags": []}]
    assert stored["base"]["user_id"] is None and stored["base"]["keywords"] == []
    without_base = fresh.model_copy(update={"base": None})
    assert "base" not in json.loads(to_metadata(Note(content="c", plan=without_base))["plan"])

    old = dict(stored, base={"version": 3, "keywords": [], "context": "", "tags": [], "links": []})
    read = from_record("id", "c", {**meta, "plan": json.dumps(old)}).plan
    assert read is not None and read.base is not None and not read.base.knows_user()
    again = json.loads(to_metadata(Note(content="c", plan=read))["plan"])
    assert "user_id" not in again["base"]
    assert from_record("id", "c", {**meta, "plan": json.dumps(stored)}).plan.base.knows_user()


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
