"""One writer per tenant (issue 12): a caller's change made while a memory is being evolved is
never overwritten, a content change re-derives what the machine derived from the old content,
an erasure during an evolution leaves nothing pointing at the erased memory, and If-Match makes
a change conditional on the version the caller read.

The scripted LLM holds an evolution at a chosen step (a gate), so each race is played in the
same order every run instead of hoping to hit a window.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

from tests.evolution.conftest import default_responder, offered, remember, settled
from tests.scripted_llm import Reply, answer, step

HOLD_S = 1.5  # under the stack's LLM timeout (2 s), so a held call is answered, not retried


class Gate:
    """A responder that, the first time `when(request)` holds, signals `reached` and holds the
    reply until `open()` (or HOLD_S); every other request goes to `then`."""

    def __init__(self, when: Callable[[dict], bool], then: Callable[[dict], Reply]) -> None:
        self.when, self.then = when, then
        self.reached = threading.Event()
        self._open = threading.Event()
        self._used = False
        self._lock = threading.Lock()

    def __call__(self, request: dict) -> Reply:
        with self._lock:
            hold = not self._used and self.when(request)
            self._used = self._used or hold
        if hold:
            self.reached.set()
            self._open.wait(HOLD_S)
        return self.then(request)

    def wait_reached(self) -> None:
        assert self.reached.wait(30), "the evolution never reached the gate"

    def open(self) -> None:
        self._open.set()


def _construction(request: dict) -> bool:
    return step(request) == "Construction"


# --- M2: a PATCH while the note is pending ---------------------------------------------------


def test_fields_patched_during_construction_are_kept(evo, scripted, user_id):
    content = f"Standup moves to 9:30 for {user_id}"
    gate = Gate(
        lambda r: _construction(r) and content in r["messages"][-1]["content"], default_responder
    )
    scripted.set(gate)
    note = remember(evo, content=content, user_id=user_id, wait=False)
    gate.wait_reached()
    r = evo.patch(f"/v1/memories/{note['id']}", json={"tags": ["mine"], "keywords": ["standup"]})
    assert r.status_code == 200, r.text
    gate.open()
    done = settled(evo, note["id"])
    assert done["status"] == "done"
    assert done["tags"] == ["mine"] and done["keywords"] == ["standup"]  # the caller's
    assert done["context"].startswith("About Standup moves")  # constructed: the caller left it
    [entry] = done["evolution_history"]
    assert entry["after"] == {"context": done["context"]}  # evolution changed nothing else


def test_content_patched_during_evolution_is_evolved_afresh(evo, scripted, user_id):
    old = f"Old plan: ship on Friday {user_id}"
    gate = Gate(
        lambda r: _construction(r) and old in r["messages"][-1]["content"], default_responder
    )
    scripted.set(gate)
    note = remember(evo, content=old, user_id=user_id, wait=False)
    gate.wait_reached()
    r = evo.patch(f"/v1/memories/{note['id']}", json={"content": "New plan: ship on Monday"})
    assert r.status_code == 200, r.text
    gate.open()
    done = settled(evo, note["id"])
    assert done["content"] == "New plan: ship on Monday"
    assert done["context"] == "About New plan: ship on Monday"
    assert "Friday" not in json.dumps(done)


# --- M1: a content change re-derives what was derived from the old content -------------------


def _evolve_towards(target: str, *, context: str) -> Callable[[dict], Reply]:
    """Construction as the default; evolution links to and rewrites the neighbour `target`."""

    def responder(request: dict) -> Reply:
        if _construction(request):
            return default_responder(request)
        handle = next((h for h, c in offered(request).items() if c.startswith(target)), None)
        if handle is None:
            return answer({"links": [], "tags": [], "neighbour_updates": []})
        update = {"id": handle, "context": context, "tags": ["rewritten"]}
        return answer({"links": [handle], "tags": [], "neighbour_updates": [update]})

    return responder


def test_a_redacted_content_leaves_no_trace_of_the_old_one(evo, scripted, user_id):
    neighbour = remember(evo, content="Vault rotation happens monthly", user_id=user_id)
    scripted.set(_evolve_towards("Vault rotation", context="Vault code is zebra4471"))
    secret = remember(
        evo, content="The vault code is zebra4471, do not share", user_id=user_id, category="ops"
    )
    assert "zebra4471" in secret["context"] and secret["links"] == [neighbour["id"]]
    assert "zebra4471" in evo.get(f"/v1/memories/{neighbour['id']}").json()["context"]
    scripted.set(default_responder)

    r = evo.patch(f"/v1/memories/{secret['id']}", json={"content": "Redacted."})
    assert r.status_code == 200, r.text
    patched = r.json()
    assert patched["status"] == "pending" and patched["version"] == secret["version"] + 1
    assert patched["keywords"] == [] and patched["context"] == "" and patched["tags"] == []
    assert patched["links"] == []  # evolution had added it, for the old content
    assert patched["category"] == "ops"  # the caller's
    assert "zebra4471" not in json.dumps(patched)  # nor in its history
    assert patched["evolution_history"][-1]["kind"] == "edit"
    # The neighbour's rewrite by the old content is undone.
    restored = evo.get(f"/v1/memories/{neighbour['id']}").json()
    assert restored["context"] == neighbour["context"] and restored["tags"] == neighbour["tags"]
    assert "zebra4471" not in json.dumps(restored)

    done = settled(evo, secret["id"])
    assert done["context"] == "About Redacted."  # derived again, from the new content
    assert "zebra4471" not in json.dumps(done)
    for mode in ("lexical", "hybrid"):
        body = {"query": "zebra4471", "mode": mode, "filters": {"user_id": user_id}}
        deadline = time.monotonic() + 30
        while (r := evo.post("/v1/memories/search", json=body)).status_code == 503:
            assert time.monotonic() < deadline, r.text  # the BM25 index is loading
            time.sleep(0.2)
        hits = r.json()["results"]
        assert all("zebra4471" not in json.dumps(h) for h in hits), mode
    r = evo.post(
        f"/v1/memories/{secret['id']}/history/{secret['evolution_history'][0]['id']}:revert"
    )
    assert r.status_code == 409  # the erased values cannot be reverted back in


def test_fields_the_caller_set_survive_a_content_change(evo, user_id):
    note = remember(evo, content="Lunch with Ana on Tuesday", tags=["people"], user_id=user_id)
    assert note["tags"] == ["people"] and note["context"] == "About Lunch with Ana on Tuesday"
    r = evo.patch(f"/v1/memories/{note['id']}", json={"content": "Lunch with Ana on Thursday"})
    assert r.json()["tags"] == ["people"] and r.json()["context"] == ""
    done = settled(evo, note["id"])
    assert done["tags"] == ["people"] and done["context"] == "About Lunch with Ana on Thursday"
    # Given in the same change, a field is the caller's too.
    r = evo.patch(
        f"/v1/memories/{note['id']}",
        json={"content": "Lunch with Ana moved", "context": "Calendar, personal"},
    )
    assert r.json()["context"] == "Calendar, personal"
    assert settled(evo, note["id"])["context"] == "Calendar, personal"


# --- M3: an erasure while a note linking to it is evolved -----------------------------------


def test_an_erasure_during_an_evolution_leaves_no_link_and_no_copied_text(evo, scripted, user_id):
    erased = remember(evo, content="Project Kestrel budget is 4 million", user_id=user_id)
    other = remember(evo, content="Project Kestrel kickoff was in May", user_id=user_id)

    def responder(request: dict) -> Reply:
        if _construction(request):
            return default_responder(request)
        shown = offered(request)
        kestrel = [h for h, c in shown.items() if c.startswith("Project Kestrel budget")]
        kickoff = [h for h, c in shown.items() if c.startswith("Project Kestrel kickoff")]
        if not kestrel:
            return answer({"links": kickoff, "tags": [], "neighbour_updates": []})
        # Links to the note about to be erased, and copies its text into the other neighbour.
        update = {"id": kickoff[0], "context": "Kestrel: 4 million budget", "tags": ["budget"]}
        return answer({"links": kestrel + kickoff, "tags": [], "neighbour_updates": [update]})

    new_content = f"Project Kestrel needs a review {user_id}"
    gate = Gate(
        lambda r: not _construction(r) and new_content in r["messages"][-1]["content"], responder
    )
    scripted.set(gate)
    new = remember(evo, content=new_content, user_id=user_id, wait=False)
    gate.wait_reached()
    r = evo.delete(f"/v1/memories/{erased['id']}")
    assert r.status_code == 200, r.text
    gate.open()
    done = settled(evo, new["id"])
    assert done["status"] == "done"
    assert erased["id"] not in done["links"] and done["links"] == [other["id"]]
    kickoff = evo.get(f"/v1/memories/{other['id']}").json()
    assert "4 million" not in json.dumps(kickoff)  # decided again, without the erased note


def test_erasing_a_turn_clears_the_follows_pointing_at_it(evo, user_id):
    turns = [{"content": t, "user_id": user_id} for t in ("Ana: lunch?", "Ben: yes, at one")]
    r = evo.post("/v1/memories/batch", json={"memories": turns, "conversation": True})
    first, second = r.json()["memories"]
    assert second["follows"] == first["id"]
    r = evo.delete(f"/v1/memories/{first['id']}")
    assert r.json()["unfollowed"] == [second["id"]]
    assert evo.get(f"/v1/memories/{second['id']}").json()["follows"] is None


# --- If-Match ------------------------------------------------------------------------------


@pytest.mark.parametrize("client", ["api", "evo"])
def test_if_match_makes_patch_and_delete_conditional_on_the_version(request, client):
    """The same on a gateway that is its own writer (no evolution service) and on one that
    sends changes to the evolution owner."""
    c = request.getfixturevalue(client)
    r = c.post("/v1/memories", json={"content": "conditional", "category": "a"})
    note_id, etag = r.json()["id"], r.headers["etag"]
    assert etag == f'"{r.json()["version"]}"'
    if client == "evo":
        settled(c, note_id)  # evolution's own write is a new version too
    got = c.get(f"/v1/memories/{note_id}")
    assert got.headers["etag"] == f'"{got.json()["version"]}"'
    current = got.headers["etag"]
    r = c.patch(f"/v1/memories/{note_id}", json={"category": "b"}, headers={"If-Match": current})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{r.json()["version"]}"' != current
    # A second writer with the old tag loses, and changes nothing.
    r = c.patch(f"/v1/memories/{note_id}", json={"category": "c"}, headers={"If-Match": current})
    assert r.status_code == 412 and r.json()["error"] == "precondition_failed"
    now = c.get(f"/v1/memories/{note_id}")
    assert now.json()["category"] == "b"
    fresh = now.headers["etag"]
    for weak_or_stale in (f"W/{fresh}", current, f'{current}, "999"'):
        r = c.delete(f"/v1/memories/{note_id}", headers={"If-Match": weak_or_stale})
        assert r.status_code == 412, (weak_or_stale, r.text)
    r = c.patch(f"/v1/memories/{note_id}", json={"category": "d"}, headers={"If-Match": "3"})
    assert r.status_code == 422 and "If-Match" in r.json()["message"]
    r = c.patch(f"/v1/memories/{note_id}", json={"category": "d"}, headers={"If-Match": "*"})
    assert r.status_code == 200
    fresh = r.headers["etag"]
    r = c.delete(f"/v1/memories/{note_id}", headers={"If-Match": f'"999", {fresh}'})
    assert r.status_code == 200 and r.json()["erased"] == [note_id]


def _strengthening(request: dict) -> Reply:
    """Construction as the default; evolution refines the new note's tags (A-MEM's strengthen)."""
    if _construction(request):
        return default_responder(request)
    return answer({"links": [], "tags": ["proj", "refined"], "neighbour_updates": []})


def test_the_callers_tags_come_back_after_every_content_change(evo, scripted, user_id):
    """Evolution refined the tags the caller gave; each new content starts again from the
    caller's, not from empty (the first change's history must not hide them)."""
    remember(evo, content=f"Neighbour so that evolution runs {user_id}", user_id=user_id)
    scripted.set(_strengthening)
    note = remember(evo, content="Sprint review on Friday", tags=["proj"], user_id=user_id)
    assert note["tags"] == ["proj", "refined"]
    for content in ("Sprint review on Monday", "Sprint review on Tuesday"):
        r = evo.patch(f"/v1/memories/{note['id']}", json={"content": content})
        assert r.json()["tags"] == ["proj"], content
        assert settled(evo, note["id"])["tags"] == ["proj", "refined"]


def test_a_link_removed_during_evolution_stays_removed(evo, scripted, user_id):
    old = remember(evo, content="Heron bridge inspection in April", user_id=user_id)

    def responder(request: dict) -> Reply:
        if _construction(request):
            return default_responder(request)
        handles = [h for h, c in offered(request).items() if c.startswith("Heron bridge")]
        return answer({"links": handles, "tags": [], "neighbour_updates": []})

    content = f"Heron bridge inspection moved {user_id}"
    gate = Gate(
        lambda r: not _construction(r) and content in r["messages"][-1]["content"], responder
    )
    scripted.set(gate)
    note = remember(evo, content=content, links=[old["id"]], user_id=user_id, wait=False)
    gate.wait_reached()
    r = evo.patch(f"/v1/memories/{note['id']}", json={"links": []})
    assert r.status_code == 200, r.text
    gate.open()
    assert settled(evo, note["id"])["links"] == []  # the LLM proposed it; the caller removed it


def test_a_note_moved_to_another_user_during_evolution_is_decided_again(evo, scripted, user_id):
    theirs = remember(evo, content="Otter habitat survey notes", user_id=user_id)
    mover = user_id + "-mover"

    def responder(request: dict) -> Reply:
        if _construction(request):
            return default_responder(request)
        handles = [h for h, c in offered(request).items() if c.startswith("Otter habitat")]
        updates = [{"id": h, "context": "copied from the mover", "tags": ["x"]} for h in handles]
        return answer({"links": handles, "tags": [], "neighbour_updates": updates})

    content = f"Otter habitat survey was repeated {user_id}"
    gate = Gate(
        lambda r: not _construction(r) and content in r["messages"][-1]["content"], responder
    )
    scripted.set(gate)
    note = remember(evo, content=content, user_id=user_id, wait=False)
    gate.wait_reached()
    r = evo.patch(f"/v1/memories/{note['id']}", json={"user_id": mover})
    assert r.status_code == 200, r.text
    gate.open()
    done = settled(evo, note["id"])
    assert done["user_id"] == mover and done["links"] == []  # evolved among the mover's notes
    untouched = evo.get(f"/v1/memories/{theirs['id']}").json()
    assert untouched["context"] == theirs["context"] and untouched["version"] == theirs["version"]
