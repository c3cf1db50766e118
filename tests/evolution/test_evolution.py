"""A-MEM's three steps through the REST API, with the LLM scripted (a fake) so that every
decision, and every fault, is deterministic."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import httpx
import pytest

from tests.evolution.conftest import default_responder, offered, remember, settled
from tests.scripted_llm import Reply, answer, step


def test_construction_fills_only_missing_fields(evo, user_id):
    note = remember(
        evo, content="Quarterly planning moved to Thursdays", keywords=["planning"], user_id=user_id
    )
    assert note["status"] == "done"
    assert note["keywords"] == ["planning"]  # given by the caller: kept
    assert note["context"] == "About Quarterly planning moved to Thursdays"
    assert note["tags"] == ["scripted"]
    [entry] = evo.get(f"/v1/memories/{note['id']}/history").json()["entries"]
    assert entry["kind"] == "evolve" and entry["trigger"] == note["id"]
    assert entry["before"] == {"context": "", "tags": []}
    assert entry["after"] == {"context": note["context"], "tags": ["scripted"]}
    assert entry["model"] == "openai:scripted-model" and entry["prompt_version"]
    assert entry["tokens"] == {"prompt_tokens": 100, "completion_tokens": 20}


def _evolve_towards(target_content: str, *, context: str, tags: list[str], extra_links=()):
    """An LLM that links the new note to the neighbour with `target_content` and rewrites it."""

    def responder(request):
        if step(request) == "Construction":
            return answer({"keywords": ["k"], "context": "c", "tags": ["t"]})
        shown = offered(request)
        target = next(i for i, c in shown.items() if c.startswith(target_content))
        return answer(
            {
                "links": [*extra_links, target],
                "tags": ["t", "refined"],
                "neighbour_updates": [{"id": target, "context": context, "tags": tags}],
            }
        )

    return responder


def test_links_and_neighbour_rewrites_go_to_the_right_notes(evo, scripted, user_id):
    # Several neighbours, so that a rank-based mix-up (A-mem issue #32) would hit another note.
    notes = [
        remember(evo, content=c, user_id=user_id)
        for c in [
            "Falcon project kicked off in March",
            "The cafeteria serves curry on Fridays",
            "Falcon budget was approved by finance",
            "Parking garage closes at midnight",
        ]
    ]
    before = {n["id"]: evo.get(f"/v1/memories/{n['id']}").json() for n in notes}
    scripted.set(
        _evolve_towards("Falcon budget", context="Falcon: budget, then a delay", tags=["falcon"])
    )
    new = remember(evo, content="Falcon launch slipped to Q3", user_id=user_id)
    target = notes[2]["id"]
    assert new["status"] == "done"
    assert new["links"] == [target]
    assert new["tags"] == ["t", "refined"]  # strengthened
    rewritten = evo.get(f"/v1/memories/{target}").json()
    assert rewritten["context"] == "Falcon: budget, then a delay" and rewritten["tags"] == [
        "falcon"
    ]
    [entry] = [e for e in rewritten["evolution_history"] if e["kind"] == "update_neighbor"]
    assert entry["trigger"] == new["id"]
    assert entry["before"] == {"context": before[target]["context"], "tags": before[target]["tags"]}
    assert entry["after"] == {"context": "Falcon: budget, then a delay", "tags": ["falcon"]}
    for other in notes:
        if other["id"] != target:
            assert evo.get(f"/v1/memories/{other['id']}").json() == before[other["id"]]
    # The rewritten neighbour is re-embedded: its new context finds it.
    hits = evo.post(
        "/v1/memories/search",
        json={"query": "budget then a delay", "k": 1, "filters": {"user_id": user_id}},
    ).json()["results"]
    assert hits[0]["memory"]["id"] == target


def test_hallucinated_and_unshown_ids_are_dropped(evo, scripted, user_id):
    elsewhere = remember(evo, content="Falcon notes of another user", user_id=user_id + "-other")
    shown = remember(evo, content="Falcon design review on Monday", user_id=user_id)

    def responder(request):
        if step(request) == "Construction":
            return answer({"keywords": ["k"], "context": "c", "tags": ["t"]})
        real = next(iter(offered(request)))
        return answer(
            {
                # m9: a handle the prompt never showed, from a server that ignores the schema.
                "links": ["made-up-id", "m9", elsewhere["id"], real, real],
                "tags": ["t"],
                "neighbour_updates": [
                    {"id": "made-up-id", "context": "x", "tags": ["x"]},
                    {"id": "m9", "context": "x", "tags": ["x"]},
                    {"id": elsewhere["id"], "context": "leak", "tags": ["leak"]},
                ],
            }
        )

    scripted.set(responder)
    new = remember(evo, content="Falcon design review moved to Tuesday", user_id=user_id)
    assert new["links"] == [shown["id"]]
    untouched = evo.get(f"/v1/memories/{elsewhere['id']}").json()
    assert untouched["context"] != "leak" and untouched["version"] == elsewhere["version"]


def test_handles_written_as_tags_are_dropped_and_keep_the_neighbours_tags(evo, scripted, user_id):
    # Gemma 3 270M often fills tag lists with the handles it was shown (m1, m2, ...).
    old = remember(evo, content="Greenhouse sensors report humidity hourly", user_id=user_id)
    scripted.set(
        _evolve_towards("Greenhouse sensors", context="Sensors: hourly, then live", tags=["m1"])
    )
    new = remember(evo, content="Greenhouse sensors switch to live humidity", user_id=user_id)
    assert new["links"] == [old["id"]]
    neighbour = evo.get(f"/v1/memories/{old['id']}").json()
    assert neighbour["context"] == "Sensors: hourly, then live"
    assert neighbour["tags"] == old["tags"] and old["tags"]


def test_revert_undoes_one_step(evo, scripted, user_id):
    old = remember(evo, content="Team offsite will be in Porto", user_id=user_id)
    scripted.set(
        _evolve_towards("Team offsite", context="Offsite: Porto, then Lisbon", tags=["trip"])
    )
    new = remember(evo, content="Offsite moved from Porto to Lisbon", user_id=user_id)
    neighbour = evo.get(f"/v1/memories/{old['id']}").json()
    entry = next(e for e in neighbour["evolution_history"] if e["kind"] == "update_neighbor")

    r = evo.post(f"/v1/memories/{old['id']}/history/{entry['id']}:revert")
    assert r.status_code == 200, r.text
    reverted = r.json()
    assert reverted["context"] == old["context"] and reverted["tags"] == old["tags"]
    assert reverted["evolution_history"][-1]["kind"] == "revert"
    assert reverted["evolution_history"][-1]["reverts"] == entry["id"]
    assert evo.post(f"/v1/memories/{old['id']}/history/{entry['id']}:revert").status_code == 409
    assert evo.post(f"/v1/memories/{old['id']}/history/nope:revert").status_code == 404

    own = next(e for e in new["evolution_history"] if e["kind"] == "evolve")
    r = evo.post(f"/v1/memories/{new['id']}/history/{own['id']}:revert")
    assert r.status_code == 200, r.text
    assert r.json()["links"] == [] and r.json()["context"] == ""


def test_other_tenants_cannot_read_or_revert_history(evo, evo_b, user_id):
    note = remember(evo, content="Private roadmap item", user_id=user_id)
    entry = note["evolution_history"][0]["id"]
    assert evo_b.get(f"/v1/memories/{note['id']}/history").status_code == 404
    assert evo_b.post(f"/v1/memories/{note['id']}/history/{entry}:revert").status_code == 404
    assert evo_b.post(f"/v1/memories/{note['id']}:evolve").status_code == 404


def _fail_first(fault: Reply, marker: str):
    """An LLM whose first call for notes containing `marker` fails with `fault`."""
    failed = threading.Event()

    def responder(request):
        if marker in request["messages"][-1]["content"] and not failed.is_set():
            failed.set()
            return fault
        return (
            answer({"keywords": ["k"], "context": "recovered", "tags": ["t"]})
            if step(request) == "Construction"
            else answer({"links": [], "tags": [], "neighbour_updates": []})
        )

    return responder


@pytest.mark.parametrize(
    "fault",
    [
        Reply(status=429, headers={"Retry-After": "1"}),
        Reply(status=500),
        Reply(content="this is not { json"),
        Reply(content='{"keywords": ["a", "b"], "context": "trunc', finish_reason="length"),
        Reply(content='{"keywords": ["x"], "context": "' + "y" * 400 + '", "tags": []}'),
        Reply(hang_s=4),  # past the 2 s timeout
    ],
    ids=["429-retry-after", "500", "garbage", "truncated", "out-of-bounds", "hang"],
)
def test_llm_faults_are_retried(evo, scripted, user_id, fault):
    marker = f"fault-{user_id}"
    scripted.set(_fail_first(fault, marker))
    before = len(scripted.requests)
    note = remember(evo, content=f"Note {marker} about retries", user_id=user_id)
    assert note["status"] == "done", note
    assert note["context"] == "recovered"
    mine = [r for r in scripted.requests[before:] if marker in r["messages"][-1]["content"]]
    assert len(mine) >= 2


def test_failed_note_can_be_retried(evo, scripted, user_id):
    scripted.set(lambda request: Reply(status=500))
    note = remember(evo, content="Doomed to fail at first", user_id=user_id)
    assert note["status"] == "failed"
    assert "500" in note["status_reason"]
    assert (
        evo.get("/v1/memories", params={"user_id": user_id, "status": "failed"}).json()["memories"][
            0
        ]["id"]
        == note["id"]
    )
    scripted.set(
        lambda request: (
            answer({"keywords": ["k"], "context": "second try", "tags": ["t"]})
            if step(request) == "Construction"
            else answer({"links": [], "tags": [], "neighbour_updates": []})
        )
    )
    r = evo.post(f"/v1/memories/{note['id']}:evolve")
    assert r.status_code == 202 and r.json()["status"] == "pending"
    done = settled(evo, note["id"])
    assert done["status"] == "done" and done["context"] == "second try"
    assert evo.post(f"/v1/memories/{note['id']}:evolve").status_code == 409


def test_wait_gives_up_after_its_timeout(evo, scripted, user_id):
    scripted.set(lambda request: Reply(hang_s=1.5, content="{}"))
    started = time.monotonic()
    r = evo.post(
        "/v1/memories",
        json={"content": "slow to evolve", "user_id": user_id},
        params={"wait": "true", "timeout": 0.5},
    )
    assert r.status_code == 201 and r.json()["status"] == "pending"
    assert time.monotonic() - started < 1.5


def test_tokens_are_counted_per_tenant_and_model(evo, evo_stack, user_id):
    remember(evo, content="Count my tokens", user_id=user_id)
    metrics = httpx.get(f"http://127.0.0.1:{evo_stack.evolution_metrics_port}/metrics").text
    m = re.search(
        r'amem_llm_tokens_total\{kind="prompt",model="scripted-model",tenant="tenant-a"\} (\S+)',
        metrics,
    )
    assert m and float(m.group(1)) >= 100


def test_conversation_turns_show_construction_the_turn_before(evo, scripted, user_id):
    prompts: list[str] = []

    def responder(request):
        if step(request) == "Construction":
            prompts.append(request["messages"][-1]["content"])
        return default_responder(request)

    scripted.set(responder)
    turns = ["Anna: Where did you go hiking?", "Ben: Up Mount Tamalpais, last Sunday."]
    r = evo.post(
        "/v1/memories/batch",
        json={
            "conversation": True,
            "memories": [{"content": t, "user_id": user_id} for t in turns],
        },
        params={"wait": "true", "timeout": 30},
    )
    assert r.status_code == 201, r.text
    first, second = r.json()["memories"]
    assert first["follows"] is None and second["follows"] == first["id"]
    [prompt] = [p for p in prompts if p.startswith(f"Note:\n{turns[1]}")]
    assert f"It follows this earlier turn of a conversation:\n{turns[0]}" in prompt

    third = remember(evo, content="Anna: Nice view?", follows=second["id"], user_id=user_id)
    assert third["follows"] == second["id"]
    r = evo.post("/v1/memories", json={"content": "Ben: yes", "follows": "no-such-memory"})
    assert r.status_code == 422 and "no-such-memory" in r.json()["message"]
    # Without `conversation`, a batch's memories follow nothing.
    r = evo.post("/v1/memories/batch", json={"memories": [{"content": t} for t in turns]})
    assert [m["follows"] for m in r.json()["memories"]] == [None, None]


def test_erasure_scrubs_what_evolution_copied_into_neighbours_and_returns_a_receipt(
    evo, scripted, user_id
):
    neighbour = remember(evo, content="Falcon budget was approved by finance", user_id=user_id)
    other = remember(evo, content="The cafeteria serves curry on Fridays", user_id=user_id)
    clean = evo.get(f"/v1/memories/{neighbour['id']}").json()
    # A private note whose evolution copies its secret into the neighbour...
    scripted.set(
        _evolve_towards(
            "Falcon budget", context="Falcon budget; CEO resigns in May (secret)", tags=["ceo"]
        )
    )
    secret = remember(evo, content="CEO resigns in May, keep quiet", user_id=user_id)
    # ...and a later note that rewrites the neighbour again, starting from that text.
    scripted.set(
        _evolve_towards(
            "Falcon budget", context="Falcon budget; CEO resigns in May; audit in June", tags=["a"]
        )
    )
    later = remember(evo, content="Audit of Falcon in June", user_id=user_id)
    tainted = evo.get(f"/v1/memories/{neighbour['id']}").json()
    assert "CEO" in tainted["context"]

    r = evo.delete(f"/v1/memories/{secret['id']}")
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["erased"] == [secret["id"]]
    [line] = receipt["scrubbed"]
    assert line["memory_id"] == neighbour["id"]
    assert line["fields"] == ["context", "tags"]
    history = {e["id"]: e for e in tainted["evolution_history"]}
    by_secret = [i for i, e in history.items() if e.get("trigger") == secret["id"]]
    by_later = [i for i, e in history.items() if e.get("trigger") == later["id"]]
    assert set(line["undone"]) == {*by_secret, *by_later} and line["later"] == by_later

    scrubbed = evo.get(f"/v1/memories/{neighbour['id']}").json()
    assert scrubbed["context"] == clean["context"] and scrubbed["tags"] == clean["tags"]
    assert "CEO" not in json.dumps(scrubbed)  # nor in its history
    assert scrubbed["evolution_history"][-1]["kind"] == "erasure"
    # An erased entry cannot be reverted back in.
    r = evo.post(f"/v1/memories/{neighbour['id']}/history/{by_secret[0]}:revert")
    assert r.status_code == 409
    # Search no longer finds the neighbour by the erased text, and other notes are untouched.
    hits = evo.post(
        "/v1/memories/search",
        json={"query": "CEO resigns", "k": 5, "filters": {"user_id": user_id}, "mode": "lexical"},
    )
    assert neighbour["id"] not in [h["memory"]["id"] for h in hits.json()["results"]]
    assert evo.get(f"/v1/memories/{other['id']}").json()["context"] == other["context"]


def test_an_erasure_cut_short_leaves_the_note_and_its_retry_finishes_it(
    evo, stack, scripted, user_id
):
    neighbour = remember(evo, content="Orchard pruning is planned for February", user_id=user_id)
    scripted.set(
        _evolve_towards("Orchard pruning", context="Pruning; the orchard is for sale", tags=["x"])
    )
    secret = remember(evo, content="The orchard is for sale, tell no one", user_id=user_id)
    assert "for sale" in evo.get(f"/v1/memories/{neighbour['id']}").json()["context"]

    # The scrub re-embeds the neighbour: with the embedding service hung, the erasure fails.
    embedding = stack.processes["embedding"].popen.pid
    os.kill(embedding, signal.SIGSTOP)
    try:
        r = evo.delete(f"/v1/memories/{secret['id']}")
    finally:
        os.kill(embedding, signal.SIGCONT)
    assert r.status_code == 503, r.text
    assert evo.get(f"/v1/memories/{secret['id']}").status_code == 200  # nothing half-done
    assert "for sale" in evo.get(f"/v1/memories/{neighbour['id']}").json()["context"]

    r = evo.delete(f"/v1/memories/{secret['id']}")
    assert r.status_code == 200, r.text
    assert [line["memory_id"] for line in r.json()["scrubbed"]] == [neighbour["id"]]
    assert evo.get(f"/v1/memories/{secret['id']}").status_code == 404
    assert "for sale" not in json.dumps(evo.get(f"/v1/memories/{neighbour['id']}").json())


def test_a_spent_llm_budget_defers_evolution_but_keeps_notes_stored_and_searchable(evo_stack):
    from tests.conftest import client_for
    from tests.evolution.conftest import BUDGET, KEY_BUDGET

    with client_for(evo_stack, KEY_BUDGET) as api:
        spent = [remember(api, content=f"Budgeted memory {i} about the orchard") for i in range(2)]
        assert all(n["status"] == "done" for n in spent)
        usage = api.get("/v1/usage").json()
        assert usage["llm_tokens"] >= BUDGET and usage["llm_tokens_per_day"] == BUDGET
        # The budget is spent: the next note is stored and searchable, but not evolved.
        r = api.post("/v1/memories", json={"content": "Pears ripen in the orchard in September"})
        assert r.status_code == 201
        late = r.json()
        deadline = time.monotonic() + 30
        while "budget" not in (api.get(f"/v1/memories/{late['id']}").json()["status_reason"] or ""):
            assert time.monotonic() < deadline, "the note was never marked deferred"
            time.sleep(0.2)
        note = api.get(f"/v1/memories/{late['id']}").json()
        assert note["status"] == "pending" and "resumes after" in note["status_reason"]
        hits = api.post("/v1/memories/search", json={"query": "when do pears ripen", "k": 1})
        assert hits.json()["results"][0]["memory"]["id"] == late["id"]
        assert api.get("/v1/usage").json()["llm_tokens"] == usage["llm_tokens"]  # no more spent
