"""Evolution survives crashes (kill -9) without evolving a note twice, finishes a journalled
plan instead of asking the LLM again, and serialises a tenant's evolutions across replicas."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from amem.core.model import Note, Plan
from amem.core.store import NoteStore
from amem.core.writer import NoteWriter
from amem.devstack import free_port
from amem.embedding.client import EmbeddingClient
from amem.evolution.brain import OfflineBrain
from amem.evolution.engine import Engine
from amem.evolution.scheduler import owner_of
from tests.evolution.conftest import default_responder, new_note, offered, remember, settled
from tests.scripted_llm import Reply, answer, step


def test_kill_9_while_pending_loses_nothing_and_evolves_once(evo, scripted, evo_stack, user_id):
    marker = f"crash-{user_id}"
    asked = threading.Event()

    def hanging(request):
        if marker in request["messages"][-1]["content"]:
            asked.set()
            return Reply(hang_s=30, content="{}")
        return default_responder(request)

    scripted.set(hanging)
    notes = [
        remember(evo, content=f"{marker} note {i}", user_id=user_id, wait=False) for i in range(3)
    ]
    assert asked.wait(30), "the evolution service never asked the LLM"
    evo_stack.processes["evolution"].kill()
    scripted.set(default_responder)
    evo_stack.start_evolution()
    for note in notes:
        done = settled(evo, note["id"])
        assert done["status"] == "done"
        assert [e["kind"] for e in done["evolution_history"]] == ["evolve"]


def test_sigterm_finishes_the_note_in_progress_and_hands_back_the_rest(
    evo, scripted, evo_stack, user_id
):
    """Graceful shutdown: the note being evolved when SIGTERM arrives is finished and written,
    queued ones stay pending for the next owner, and the process exits cleanly in time."""
    marker = f"term-{user_id}"
    asked = threading.Event()

    def slow(request):
        if marker in request["messages"][-1]["content"] and not asked.is_set():
            asked.set()
            time.sleep(3)  # an LLM call in flight when the signal comes
        return default_responder(request)

    scripted.set(slow)
    notes = [
        remember(evo, content=f"{marker} note {i}", user_id=user_id, wait=False) for i in range(3)
    ]
    assert asked.wait(30), "the evolution service never asked the LLM"
    proc = evo_stack.processes["evolution"]
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(30) == 0
    statuses = [evo.get(f"/v1/memories/{n['id']}").json()["status"] for n in notes]
    assert statuses.count("done") >= 1, "the note in progress was dropped, not finished"
    scripted.set(default_responder)
    evo_stack.start_evolution()
    for note in notes:
        done = settled(evo, note["id"])
        assert done["status"] == "done"
        assert [e["kind"] for e in done["evolution_history"]] == ["evolve"]


def test_chroma_dying_mid_evolution_leaves_notes_pending_then_done(
    evo, scripted, evo_stack, user_id
):
    marker = f"chroma-{user_id}"
    asked, release = threading.Event(), threading.Event()

    def held(request):
        if marker in request["messages"][-1]["content"]:
            asked.set()
            release.wait(30)
        return default_responder(request)

    scripted.set(held)
    notes = [
        remember(evo, content=f"{marker} note {i}", user_id=user_id, wait=False) for i in range(2)
    ]
    assert asked.wait(30)
    evo_stack.processes["chromadb"].kill()
    release.set()  # the LLM answers while the store is gone: nothing can be written
    time.sleep(1)
    evo_stack.start_chroma()
    for note in notes:
        done = settled(evo, note["id"], timeout=90)
        assert done["status"] == "done"
        assert [e["kind"] for e in done["evolution_history"]] == ["evolve"]


def test_a_journalled_plan_is_finished_not_redecided(evo, scripted, restart_evolution, user_id):
    stack = restart_evolution
    hub = remember(evo, content="Journal hub note", user_id=user_id, wait=False)
    tenant = "tenant-a"
    new = Note(content=f"Journalled note {user_id}", user_id=user_id)
    plan_fields = {
        "id": str(uuid.uuid4()),
        "trigger": new.id,
        "model": "openai:scripted-model",
        "prompt_version": "test",
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        "construction": {"keywords": ["journal"], "context": "from the plan", "tags": ["j"]},
        "links": [hub["id"]],
        "tags": ["j"],
        "neighbour_updates": [{"id": hub["id"], "context": "rewritten once", "tags": ["hub"]}],
        "neighbours_shown": [hub["id"]],
    }
    plan = Plan.model_validate(plan_fields)
    new.plan = plan

    async def crash_half_way():
        store = NoteStore("127.0.0.1", stack.chroma_port)
        embedder = EmbeddingClient(stack.embedding_target)
        brain = OfflineBrain(embedder, link_threshold=0.5)
        writer = NoteWriter(store, embedder)
        engine = Engine(store, embedder, brain, writer=writer, neighbours=5)
        try:
            vectors = (await embedder.embed([new.embedding_text()])).vectors
            await store.put(tenant, [new], vectors)
            # The first half of the plan is applied, then the worker "dies".
            await engine._apply_neighbour(tenant, new, plan, plan.neighbour_updates[0])
        finally:
            await embedder.close()

    asyncio.run(crash_half_way())
    before = len(scripted.requests)
    stack.start_evolution()
    done = settled(evo, new.id)
    assert done["status"] == "done"
    assert done["links"] == [hub["id"]] and done["context"] == "from the plan"
    # The LLM was not asked about the journalled note again (it may appear as another's neighbour).
    for request in scripted.requests[before:]:
        if step(request) == "Construction":
            assert new.content not in request["messages"][-1]["content"]
        else:
            assert new_note(request) != new.content
    hub_now = settled(evo, hub["id"])
    entries = [e for e in hub_now["evolution_history"] if e.get("plan") == plan.id]
    assert len(entries) == 1 and hub_now["context"] == "rewritten once"


def test_two_replicas_serialise_a_tenants_evolutions(evo, scripted, restart_evolution, user_id):
    stack = restart_evolution
    peers = [stack.evolution_target, f"127.0.0.1:{free_port()}"]
    assert owner_of("tenant-a", 2) == 1  # so Notify to replica 0 must be forwarded
    for index, target in enumerate(peers):
        stack.start_evolution(
            name=f"evolution-{index}",
            port=int(target.rsplit(":", 1)[1]),
            metrics_port=free_port(),
            peers=peers,
            replica_index=index,
            env={"AMEM_EVOLUTION_NEIGHBOURS": "12"},  # every spoke sees the hub
        )
    hub = remember(evo, content=f"HUB of {user_id}", user_id=user_id)

    def rewrite_hub(request):
        if step(request) == "Construction":
            return default_responder(request)
        shown = offered(request)
        new_content = new_note(request)
        hub_id = next(i for i, c in shown.items() if c.startswith("HUB"))
        # A slow LLM widens the window in which unserialised writers would overwrite each other.
        return Reply(
            hang_s=0.2,
            content=answer(
                {
                    "links": [hub_id],
                    "tags": [],
                    "neighbour_updates": [
                        {
                            "id": hub_id,
                            "context": f"last: {new_content[:40]}",
                            "tags": [new_content.split()[1]],
                        }
                    ],
                }
            ).content,
        )

    scripted.set(rewrite_hub)
    with ThreadPoolExecutor(8) as pool:
        notes = list(
            pool.map(
                lambda i: remember(
                    evo, content=f"spoke {i} of {user_id}", user_id=user_id, wait=False
                ),
                range(8),
            )
        )
    for note in notes:
        assert settled(evo, note["id"])["status"] == "done"
    history = [
        e
        for e in evo.get(f"/v1/memories/{hub['id']}").json()["evolution_history"]
        if e["kind"] == "update_neighbor"
    ]
    assert sorted(e["trigger"] for e in history) == sorted(n["id"] for n in notes)
    # No lost update: each rewrite started from the state the previous one left.
    for earlier, later in zip(history, history[1:], strict=False):
        assert later["before"] == earlier["after"]
    final = evo.get(f"/v1/memories/{hub['id']}").json()
    assert {"context": final["context"], "tags": final["tags"]} == history[-1]["after"]


def test_offline_backend_without_an_llm(evo, scripted, restart_evolution, user_id):
    stack = restart_evolution
    stack.start_evolution(env={"AMEM_EVOLUTION_LLM_BACKEND": "offline"})
    before = len(scripted.requests)
    first = remember(
        evo,
        content="The quarterly sales report for the Berlin office is due Friday.",
        user_id=user_id,
    )
    second = remember(
        evo,
        content="Berlin office quarterly sales figures look strong. Celebrate later.",
        user_id=user_id,
    )
    assert len(scripted.requests) == before  # no LLM was asked
    assert second["status"] == "done"
    assert second["context"] == "Berlin office quarterly sales figures look strong."
    assert second["keywords"] and all(
        k.split()[0] in second["content"].lower() for k in second["keywords"]
    )
    assert second["tags"] and all(" " not in t for t in second["tags"])
    assert second["links"] == [first["id"]], (first, second)
    assert evo.get(f"/v1/memories/{first['id']}").json()["version"] == first["version"]
    assert second["evolution_history"][0]["model"] == "offline"


def test_offline_context_is_the_turn_before(stack):
    """The offline brain gives a conversation turn the turn it answers as its context."""

    async def construct():
        embedder = EmbeddingClient(stack.embedding_target)
        brain = OfflineBrain(embedder, link_threshold=0.5)
        try:
            question = Note(content="Anna: Where did you go hiking? It was sunny.")
            reply = Note(content="Ben: Up Mount Tamalpais. Great views.", follows=question.id)
            alone, _ = await brain.construct("t", reply, None)
            after, _ = await brain.construct("t", reply, question)
        finally:
            await embedder.close()
        return alone, after

    alone, after = asyncio.run(construct())
    assert alone.context == "Ben: Up Mount Tamalpais."
    assert after.context == "Anna: Where did you go hiking? It was sunny."
    assert after.keywords == alone.keywords and "tamalpais" in " ".join(after.keywords)
