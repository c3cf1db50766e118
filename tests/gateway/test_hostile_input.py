"""Findings of the attack run of 2026-12-03 (issue 12), each with the input that found it: every
one answers a clear 4xx, or works, where it used to answer 500, hang or store something else.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from datetime import UTC, datetime

import chromadb
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from amem.core.model import TENANT_PATTERN, Note
from amem.core.store import to_metadata, to_micros
from amem.devstack import free_port
from amem.gateway.limits import CatchAll
from tests.conftest import KEY_A, create

BODY_TIMEOUT_S = 2  # AMEM_BODY_TIMEOUT_S of the session's stack (tests/conftest.py)
MAX_LINK_MEMORIES = 6  # AMEM_MAX_LINK_MEMORIES of the session's stack


# --- H1: instants outside the datetime range ----------------------------------------------


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_instant_with_no_utc_date_time_gets_422_on_create_and_patch(api, user_id, instant):
    r = api.post("/v1/memories", json={"content": "edge of time", "timestamp": instant})
    assert r.status_code == 422, r.text
    assert "timestamp" in r.json()["message"] and "range" in r.json()["message"]
    note = create(api, content="edge of time", user_id=user_id)
    r = api.patch(f"/v1/memories/{note['id']}", json={"timestamp": instant})
    assert r.status_code == 422, r.text
    assert api.get(f"/v1/memories/{note['id']}").json()["version"] == 1
    listed = api.get("/v1/memories", params={"user_id": user_id}).json()["memories"]
    assert [m["id"] for m in listed] == [note["id"]]


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"])
def test_the_first_and_last_instants_round_trip(api, user_id, instant):
    note = create(api, content="edge of time", timestamp=instant, user_id=user_id)
    got = api.get(f"/v1/memories/{note['id']}").json()
    assert datetime.fromisoformat(got["timestamp"]) == datetime.fromisoformat(instant)
    assert got["timestamp"] == note["timestamp"]
    hits = api.post(
        "/v1/memories/search", json={"query": "edge of time", "filters": {"user_id": user_id}}
    )
    assert hits.status_code == 200 and len(hits.json()["results"]) == 1
    assert api.delete(f"/v1/memories/{note['id']}").status_code == 200


def test_a_note_stored_out_of_range_by_an_older_version_is_read_and_erased(api, stack):
    """Year 0 got into the store before the API checked: such a note is read with its time
    clamped to the first instant, and can be erased, instead of answering 500 forever."""
    note = Note(content="stored before the range check", timestamp=datetime(2020, 1, 1, tzinfo=UTC))
    meta = to_metadata(note)
    # 0001-01-01T00:00:00+01:00, as an older version stored it: an hour before year 1.
    meta["timestamp"] = to_micros(datetime.min.replace(tzinfo=UTC)) - 3_600_000_000
    client = chromadb.HttpClient(host="127.0.0.1", port=stack.chroma_port)
    meta = {k: v for k, v in meta.items() if v is not None}
    client.get_collection("amem-tenant-a").add(
        ids=[note.id], embeddings=[[0.1] * 384], documents=[note.content], metadatas=[meta]
    )
    got = api.get(f"/v1/memories/{note.id}")
    assert got.status_code == 200, got.text
    assert got.json()["timestamp"].startswith("0001-01-01T00:00:00")
    assert api.delete(f"/v1/memories/{note.id}").status_code == 200
    assert api.get(f"/v1/memories/{note.id}").status_code == 404


# --- M4 and L7: values keep their type; NaN, numbers as times and 0 as false are refused --


def test_metadata_values_keep_their_json_types(api):
    metadata = {"b": True, "f": False, "x": 1.0, "i": 1, "s": "1", "n": None, "e": 2.5e-7}
    note = create(api, content="typed metadata", metadata=metadata)
    for body in (note, api.get(f"/v1/memories/{note['id']}").json()):
        assert body["metadata"] == metadata
        assert [type(v) for v in body["metadata"].values()] == [type(v) for v in metadata.values()]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_metadata_is_refused(api, literal):
    body = b'{"content": "x", "metadata": {"v": ' + literal + b"}}"
    r = api.post("/v1/memories", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "metadata.v" in r.json()["message"]


def test_numbers_are_not_times_and_zero_is_not_false(api, user_id):
    r = api.get("/v1/memories", params={"until": "0.5"})
    assert r.status_code == 422 and "until" in r.json()["message"]
    for filters in ({"until": 0.5}, {"since": "1700000000"}):
        r = api.post("/v1/memories/search", json={"query": "x", "filters": filters})
        assert r.status_code == 422, r.text
    r = api.post("/v1/memories", json={"content": "x", "timestamp": 1700000000})
    assert r.status_code == 422 and "timestamp" in r.json()["message"]
    r = api.post("/v1/memories/search", json={"query": "x", "include_links": 0})
    assert r.status_code == 422 and "include_links" in r.json()["message"]
    r = api.post("/v1/memories/batch", json={"memories": [{"content": "x"}], "conversation": 1})
    assert r.status_code == 422 and "conversation" in r.json()["message"]


def test_a_naive_timestamp_is_utc_on_write_and_on_read(api):
    note = create(api, content="naive", timestamp="2024-05-01T10:00:00")
    assert note["timestamp"] == api.get(f"/v1/memories/{note['id']}").json()["timestamp"]
    assert datetime.fromisoformat(note["timestamp"]) == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_follows_errors_name_follows_and_repeated_links_are_one(api):
    r = api.post("/v1/memories", json={"content": "reply", "follows": "no-such-turn"})
    assert r.status_code == 422
    assert r.json()["message"].startswith("follows") and "no-such-turn" in r.json()["message"]
    target = create(api, content="link target")
    note = create(api, content="links twice", links=[target["id"], target["id"]])
    assert note["links"] == [target["id"]]
    r = api.patch(f"/v1/memories/{note['id']}", json={"links": [target["id"]] * 3})
    assert r.json()["links"] == [target["id"]]


def test_a_body_that_is_not_utf8_gets_a_documented_422(api):
    r = api.post(
        "/v1/memories",
        content=b'{"content": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_argument" and "body" in r.json()["message"]


def test_the_schema_states_the_configured_maxima(anon):
    schema = anon.get("/openapi.json").json()
    params = {
        (path, p["name"]): p["schema"]
        for path, item in schema["paths"].items()
        for p in item.get("get", {}).get("parameters", [])
    }
    assert params[("/v1/memories", "limit")]["maximum"] == 500
    assert params[("/v1/memories/{memory_id}/links", "depth")]["maximum"] == 3
    models = schema["components"]["schemas"]
    assert models["SearchRequest"]["properties"]["k"]["maximum"] == 100
    assert models["MemoryBatchCreate"]["properties"]["memories"]["maxItems"] == 20


# --- L1: a query of nothing but underscores ---------------------------------------------


@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
def test_a_query_with_no_searchable_word_finds_nothing_instead_of_failing(api, user_id, mode):
    create(api, content="snake_case_names are fine", user_id=user_id)
    deadline = time.monotonic() + 30  # hybrid is dense only until the BM25 index has loaded
    while api.post("/v1/memories/search", json={"query": "names"}).json()["mode"] != "hybrid":
        assert time.monotonic() < deadline, "the BM25 index never loaded"
        time.sleep(0.2)
    body = {"query": "__ ___", "mode": mode, "filters": {"user_id": user_id}}
    r = api.post("/v1/memories/search", json=body)
    assert r.status_code == 200, r.text
    if mode == "lexical":
        assert r.json()["results"] == []
    # Underscores split words, as the index splits them.
    body = {"query": "snake_case", "mode": mode, "filters": {"user_id": user_id}}
    assert len(api.post("/v1/memories/search", json=body).json()["results"]) == 1


# --- L2: crafted cursors ----------------------------------------------------------------


def _cursor(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_crafted_cursors_get_422_without_the_stores_words(api, user_id):
    create(api, content="one page", user_id=user_id)
    # The filter key of this listing, from a real cursor of it.
    create(api, content="second page", user_id=user_id)
    cursor = api.get("/v1/memories", params={"user_id": user_id, "limit": 1}).json()["next_cursor"]
    fkey = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["f"]
    for offset in (1e300, 10**30, 10**18, 2**31, -1, 1.5, True, "1"):
        r = api.get(
            "/v1/memories", params={"user_id": user_id, "cursor": _cursor({"o": offset, "f": fkey})}
        )
        assert r.status_code == 422, (offset, r.text)
        assert r.json()["message"] == "cursor is not valid: pass next_cursor back unchanged"
    r = api.get(
        "/v1/memories", params={"user_id": user_id, "cursor": _cursor({"o": 2**31 - 1, "f": fkey})}
    )
    assert r.status_code == 200 and r.json()["memories"] == []


# --- L3: tenant ids ChromaDB cannot name a collection after -------------------------------


@pytest.mark.parametrize(
    ("tenant", "chroma_takes_it"),
    [("rt-", False), ("rt_", False), ("a", True), ("rt-1", True), ("r_t", True), ("a" * 63, True)],
)
def test_the_tenant_pattern_accepts_exactly_what_chromadb_can_name(stack, tenant, chroma_takes_it):
    import re

    from amem.gateway.auth import KeyRing

    client = chromadb.HttpClient(host="127.0.0.1", port=stack.chroma_port)
    name = f"amemtest-{tenant}"
    try:
        client.create_collection(name)
        client.delete_collection(name)
        taken = True
    except Exception:
        taken = False
    assert taken is chroma_takes_it
    assert bool(re.match(TENANT_PATTERN, tenant)) is chroma_takes_it
    if not chroma_takes_it:  # a key configured for such a tenant fails the start, with a reason
        with pytest.raises(ValueError, match="must match"):
            KeyRing({tenant: ["some-key"]})


# --- L4 and L5: linked memories follow the filters and are bounded ---------------------------


def test_include_links_keeps_to_the_searchs_filters(api, user_id):
    alice = create(api, content="Alice's salary review is in March", user_id=user_id + "-alice")
    mine = create(api, content="Bob's salary review notes", user_id=user_id, links=[alice["id"]])
    body = {"query": "salary review", "filters": {"user_id": user_id}, "include_links": True}
    results = api.post("/v1/memories/search", json=body).json()["results"]
    assert [r["memory"]["id"] for r in results] == [mine["id"]]


def test_links_and_include_links_are_capped_and_say_so(api, user_id):
    leaves = [
        create(api, content=f"leaf {i}", user_id=user_id) for i in range(MAX_LINK_MEMORIES + 2)
    ]
    hub = create(api, content="the hub memory", user_id=user_id, links=[n["id"] for n in leaves])
    r = api.get(f"/v1/memories/{hub['id']}/links", params={"depth": 2}).json()
    assert len(r["memories"]) == MAX_LINK_MEMORIES and r["truncated"] is True
    assert r["memories"][0]["memory"]["id"] == hub["id"]
    small = api.get(f"/v1/memories/{leaves[0]['id']}/links").json()
    assert small["truncated"] is False and len(small["memories"]) == 1
    body = {
        "query": "the hub memory",
        "k": 1,
        "include_links": True,
        "filters": {"user_id": user_id},
    }
    found = api.post("/v1/memories/search", json=body).json()
    assert found["results"][0]["memory"]["id"] == hub["id"]
    assert len(found["results"]) == 1 + MAX_LINK_MEMORIES and found["links_truncated"] is True


# --- L6: what a request may cost before it is authenticated --------------------------------


def test_an_oversized_request_head_gets_431_before_the_key_is_read(stack):
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as c:
        r = c.get("/v1/memories", headers={"Authorization": "Bearer " + "k" * 200_000})
        assert r.status_code == 431 and r.json()["error"] == "headers_too_large"
    with httpx.Client(base_url=stack.gateway_url, timeout=10) as c:  # and the server serves on
        r = c.get("/v1/memories", headers={"Authorization": f"Bearer {KEY_A}", "X-Pad": "p" * 8000})
        assert r.status_code == 200


def test_a_body_shorter_than_its_content_length_gets_408_and_the_connection_closes(stack):
    head = (
        "POST /v1/memories HTTP/1.1\r\nHost: amem\r\n"
        f"Authorization: Bearer {KEY_A}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(
        ("127.0.0.1", stack.gateway_port), timeout=BODY_TIMEOUT_S + 10
    ) as s:
        started = time.monotonic()
        s.sendall(head.encode() + b'{"content": "never finis')
        received = b""
        while chunk := s.recv(65536):  # until the server closes the connection
            received += chunk
        waited = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"request_timeout" in received
    assert BODY_TIMEOUT_S - 0.5 < waited < BODY_TIMEOUT_S + 5


def test_an_unhandled_error_answers_500_and_keeps_the_connection():
    """FAULT INJECTION: a stand-in app whose route raises, behind the gateway's CatchAll and
    uvicorn, checks that the keep-alive connection outlives the 500."""
    app = FastAPI()
    peers: list[tuple[str, int]] = []

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("injected fault")

    app.add_middleware(CatchAll)

    async def record_peer(scope, receive, send):
        peers.append(tuple(scope["client"]))
        await app(scope, receive, send)

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(record_peer, host="127.0.0.1", port=port, log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            first = c.get("/boom")
            second = c.get("/boom")
        assert first.status_code == second.status_code == 500
        assert first.json() == {"error": "internal", "message": "internal error"}
        assert len(peers) == 2 and peers[0] == peers[1], peers  # one connection for both
    finally:
        server.should_exit = True
        thread.join(10)
