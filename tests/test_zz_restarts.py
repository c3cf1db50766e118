"""Crashes: no acknowledged write is lost when the gateway or ChromaDB is killed with SIGKILL,
and a dead dependency gives 503 with Retry-After, then recovery without a restart.

Named to run last: these tests kill and restart processes of the shared stack.
"""

from __future__ import annotations

import time

from tests.conftest import create, eventually


def _write_some(api, user_id, n):
    return [
        create(api, content=f"durable note {i} for {user_id}", user_id=user_id) for i in range(n)
    ]


def _assert_all_present(api, notes, user_id):
    for note in notes:
        got = api.get(f"/v1/memories/{note['id']}")
        assert got.status_code == 200, got.text
        assert {k: v for k, v in note.items() if k != "embedding_truncated"} == got.json()
    r = api.post(
        "/v1/memories/search",
        json={"query": notes[0]["content"], "k": 1, "filters": {"user_id": user_id}},
    )
    assert r.json()["results"][0]["memory"]["id"] == notes[0]["id"]


def test_gateway_sigkill_loses_no_acknowledged_note(stack, api, user_id):
    notes = _write_some(api, user_id, 10)
    stack.processes["gateway"].kill()
    stack.start_gateway()
    _assert_all_present(api, notes, user_id)


def test_chroma_sigkill_loses_no_acknowledged_note(stack, api, user_id):
    notes = _write_some(api, user_id, 10)
    stack.processes["chromadb"].kill()
    r = api.post("/v1/memories", json={"content": "while chroma is down"})
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "unavailable" and int(r.headers["retry-after"]) >= 1
    assert api.get("/readyz").status_code == 503
    stack.start_chroma()
    # The same gateway process recovers once ChromaDB is back.
    eventually(lambda: api.get("/readyz").status_code == 200, "the gateway never got ready again")
    _assert_all_present(api, notes, user_id)
    assert api.get("/v1/memories", params={"user_id": user_id}).json()["memories"].__len__() == 10


def test_embedding_down_gives_503_then_recovers(stack, api, user_id):
    stack.processes["embedding"].kill()
    started = time.monotonic()
    r = api.post("/v1/memories", json={"content": "while embedding is down", "user_id": user_id})
    assert r.status_code == 503, r.text
    assert "embedding" in r.json()["message"] and r.headers["retry-after"]
    assert time.monotonic() - started < 15  # bounded by the deadline, no hang
    assert api.get("/v1/memories", params={"user_id": user_id}).json()["memories"] == []
    stack.start_embedding()
    eventually(lambda: api.get("/readyz").status_code == 200, "the gateway never got ready again")
    create(api, content="after recovery", user_id=user_id)
