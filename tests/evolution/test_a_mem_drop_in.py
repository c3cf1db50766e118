"""The A-mem drop-in (`agentic_memory`): A-mem's own API over the evolution stack, method by
method, and its local retrievers."""

from __future__ import annotations

import pytest

from agentic_memory.memory_system import AgenticMemorySystem, MemoryNote
from amem import Client
from tests.conftest import KEY_A


@pytest.fixture
def env(evo_stack, monkeypatch):
    monkeypatch.setenv("AMEM_URL", evo_stack.gateway_url)
    monkeypatch.setenv("AMEM_API_KEY", KEY_A)
    return evo_stack


@pytest.fixture
def system(env) -> AgenticMemorySystem:
    # A-mem's own arguments, as its users pass them; the LLM key is not amem's business.
    return AgenticMemorySystem(
        model_name="all-MiniLM-L6-v2", llm_backend="openai", llm_model="gpt-4o-mini"
    )


def test_memory_note_keeps_a_mems_defaults():
    note = MemoryNote("just content")
    assert note.context == "General" and note.category == "Uncategorized"
    assert note.keywords == note.tags == note.links == note.evolution_history == []
    assert note.retrieval_count == 0 and len(note.timestamp) == 12 and note.timestamp.isdigit()
    assert note.last_accessed == note.timestamp and note.id


def test_add_and_read_give_back_every_field_as_given(system):
    note_id = system.add_note(
        content="Neural networks learn representations",
        tags=["ml", "nn"],
        keywords=["neural", "representation"],
        links=["link1", "link2"],  # not memories: A-mem keeps them anyway
        context="Machine learning basics",
        category="Research",
        timestamp="202401011230",
    )
    note = system.read(note_id)
    assert isinstance(note, MemoryNote) and note.id == note_id
    assert note.content == "Neural networks learn representations"
    assert note.tags == ["ml", "nn"] and note.keywords == ["neural", "representation"]
    assert note.links == ["link1", "link2"]
    assert note.context == "Machine learning basics" and note.category == "Research"
    assert note.timestamp == "202401011230"
    assert system.read("no-such-id") is None


def test_what_the_caller_leaves_out_amem_constructs(system):
    note = system.read(system.add_note("Quarterly planning moves to Thursdays"))
    assert note.keywords and note.tags  # by the evolution service, before add_note returns
    assert note.context.startswith("About Quarterly planning")
    assert note.category == "Uncategorized"
    with pytest.raises(TypeError):
        system.add_note("x", colour="red")  # A-mem's MemoryNote refuses it too
    assert system.read(system.add_note("timed", time="202312312359")).timestamp == "202312312359"


def test_free_form_fields_round_trip_and_otherwise_show_amems(system):
    note_id = system.add_note(
        "Kept as given",
        retrieval_count=7,
        last_accessed="whenever",
        evolution_history=[{"step": 1}, "free text"],
        timestamp="not a time",
    )
    note = system.read(note_id)
    assert note.retrieval_count == 7 and note.last_accessed == "whenever"
    assert note.evolution_history == [{"step": 1}, "free text"]
    assert note.timestamp == "not a time"
    plain = system.read(system.add_note("Left alone"))
    assert plain.retrieval_count == 0 and len(plain.last_accessed) == 12
    assert [e["kind"] for e in plain.evolution_history] == ["evolve"]  # amem's own history


def test_update_sets_what_the_note_has(system, env):
    note_id = system.add_note("Draft budget for the offsite")
    other = system.add_note("Offsite venue is in Porto")
    assert system.update(
        note_id,
        content="Final budget for the offsite",
        tags=["budget"],
        keywords=["offsite"],
        context="Planning",
        links=[other, "external-ref"],
        colour="ignored",  # not a field of the note: ignored, as A-mem does
    )
    note = system.read(note_id)
    assert note.content == "Final budget for the offsite" and note.tags == ["budget"]
    assert note.keywords == ["offsite"] and note.context == "Planning"
    assert note.links[:2] == [other, "external-ref"]
    with Client() as c:
        assert other in c.get(note_id).links  # a real memory: an amem link
    assert system.update("no-such-id", content="x") is False
    hits = system.search_agentic("Final budget for the offsite", k=1)
    assert hits[0]["content"] == "Final budget for the offsite" and hits[0]["tags"] == ["budget"]


def test_each_instance_is_a_fresh_scope_unless_bound(system, env):
    note_id = system.add_note("Only in the first instance")
    fresh = AgenticMemorySystem()
    assert fresh.read(note_id) is None and fresh.search_agentic("first instance") == []
    bound = AgenticMemorySystem(user_id=system.user_id)
    assert bound.read(note_id).content == "Only in the first instance"
    assert list(bound.memories) == [note_id]


def test_delete_then_nothing_finds_it(system):
    note_id = system.add_note("Temporary fact to forget")
    assert system.delete(note_id) is True
    assert system.read(note_id) is None
    assert system.search_agentic("Temporary fact to forget", k=1) == []
    assert system.delete(note_id) is False


def test_search_shapes_and_neighbours(system):
    cat = system.add_note("The cat is called Miso")
    fish = system.add_note("Miso eats fish every day", links=[cat])
    system.add_note("Rain is expected on Tuesday")
    results = system.search("What is the cat called?", k=2)
    assert [set(r) for r in results] == [{"id", "content", "context", "keywords", "score"}] * 2
    assert results[0]["id"] in (cat, fish) and isinstance(results[0]["score"], float)
    agentic = system.search_agentic("fish", k=5)
    direct = [r for r in agentic if not r["is_neighbor"]]
    linked = [r for r in agentic if r["is_neighbor"]]
    assert direct[0]["id"] == fish and "score" in direct[0]
    assert cat in [r["id"] for r in agentic]
    assert all("score" not in r for r in linked)
    for r in agentic:
        assert {"id", "content", "context", "keywords", "tags", "timestamp", "category"} <= set(r)
    assert len(system.search_agentic("fish", k=1)) == 1
    text, indices = system.find_related_memories("cat", k=2)
    assert text.startswith("memory index:0\ttalk start time:") and indices == [0, 1]
    raw = system.find_related_memories_raw("fish", k=1)
    assert "memory content: Miso eats fish every day" in raw
    assert "memory content: The cat is called Miso" in raw  # its link follows it
    assert AgenticMemorySystem().find_related_memories("anything") == ("", [])


def test_consolidate_analyze_and_process(system):
    first = system.add_note("Deep learning uses neural networks")
    system.consolidate_memories()
    assert system.search_agentic("Deep learning uses neural networks", k=1)[0]["id"] == first
    analysis = system.analyze_content("Graph databases store relationships")
    assert set(analysis) == {"keywords", "context", "tags"} and analysis["keywords"]
    assert system.memories.keys() == {first}  # the analysis left nothing behind
    evolved, note = system.process_memory(system.read(first))
    assert isinstance(evolved, bool) and isinstance(note, MemoryNote)
    assert note.tags is not None and note.context and note.keywords is not None
    assert system.process_memory(MemoryNote("never stored"))[0] is False


def test_the_local_retrievers(tmp_path):
    from agentic_memory.retrievers import ChromaRetriever, PersistentChromaRetriever

    retriever = ChromaRetriever(collection_name="drop_in_test")
    try:
        meta = {"tags": ["a", "b"], "config": {"k": "v"}, "count": 42, "ratio": 0.5, "s": "hi"}
        retriever.add_document("artificial intelligence and learning", meta, "d1")
        retriever.add_document("cooking pasta at home", {"count": "-10"}, "d2")
        found = retriever.search("machine intelligence", k=1)
        assert found["ids"] == [["d1"]]
        assert found["metadatas"][0][0] == meta  # lists, dicts and numbers come back as such
        assert retriever.search("pasta", k=1)["metadatas"][0][0] == {"count": -10}
        retriever.delete_document("d1")
        assert retriever.collection.get(ids=["d1"])["ids"] == []
    finally:
        retriever.client.reset()
    first = PersistentChromaRetriever(str(tmp_path), "kept")
    first.add_document("persisted", {}, "p1")
    with pytest.raises(ValueError, match="already exists"):
        PersistentChromaRetriever(str(tmp_path), "kept")
    again = PersistentChromaRetriever(str(tmp_path), "kept", extend=True)
    assert again.collection.get(ids=["p1"])["documents"] == ["persisted"]
