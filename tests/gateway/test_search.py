"""Search through the real embedding model: meaning, not words, decides the order."""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import httpx

from tests.conftest import KEY_A, create

CORPUS = [
    "My daughter's birthday party is on the 14th; she wants a dinosaur cake.",
    "The production database runs PostgreSQL 16 on three replicas.",
    "I am allergic to peanuts and shellfish.",
    "Our team's sprint retrospective happens every second Friday.",
    "The cat hides under the bed whenever it thunders.",
]


def _search(api, query, **body):
    r = api.post("/v1/memories/search", json={"query": query, **body})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_semantically_closest_note_comes_first(api, user_id):
    ids = [create(api, content=c, user_id=user_id)["id"] for c in CORPUS]
    only_mine = {"filters": {"user_id": user_id}}
    cases = {
        "What food should I avoid because of allergies?": ids[2],
        "Which SQL engine backs our main datastore?": ids[1],
        "How does my pet react to storms?": ids[4],
        "What kind of cake for the kid's party?": ids[0],
    }
    for query, expected in cases.items():
        results = _search(api, query, k=5, **only_mine)
        assert results[0]["memory"]["id"] == expected, query
        scores = [r["score"] for r in results]
        assert scores == sorted(scores, reverse=True)
        assert -1.0 <= scores[-1] <= scores[0] <= 1.0


def test_search_filters_and_k(api, user_id):
    create(api, content="Rome trip: book the Colosseum tour", user_id=user_id, tags=["travel"])
    create(api, content="Rome trip: pack sunscreen", user_id=user_id, tags=["packing"])
    create(api, content="Rome trip: find a gelato place", user_id=user_id + "-x", tags=["travel"])
    results = _search(api, "Rome", k=10, filters={"user_id": user_id, "tag": "travel"})
    assert [r["memory"]["content"] for r in results] == ["Rome trip: book the Colosseum tour"]
    assert len(_search(api, "Rome", k=1, filters={"user_id": user_id})) == 1
    r = api.post("/v1/memories/search", json={"query": "Rome", "k": 100000})
    assert r.status_code == 422 and "k" in r.json()["message"]


def test_search_time_range(api, user_id):
    create(
        api, content="Old news about the merger", user_id=user_id, timestamp="2020-01-01T00:00:00Z"
    )
    create(
        api,
        content="Fresh news about the merger",
        user_id=user_id,
        timestamp="2024-06-01T00:00:00Z",
    )
    results = _search(
        api, "merger news", filters={"user_id": user_id, "since": "2023-01-01T00:00:00Z"}
    )
    assert [r["memory"]["content"] for r in results] == ["Fresh news about the merger"]


def test_include_links_adds_linked_neighbours(api, user_id):
    target = create(
        api, content="Quarterly budget spreadsheet lives in the finance drive", user_id=user_id
    )
    hit = create(
        api,
        content="Ask Priya about the Q3 marketing budget",
        user_id=user_id,
        links=[target["id"]],
    )
    plain = _search(api, "Priya marketing budget", k=1, filters={"user_id": user_id})
    assert [r["memory"]["id"] for r in plain] == [hit["id"]]
    linked = _search(
        api, "Priya marketing budget", k=1, filters={"user_id": user_id}, include_links=True
    )
    assert [r["memory"]["id"] for r in linked] == [hit["id"], target["id"]]
    assert linked[1]["score"] is None and linked[1]["linked_from"] == hit["id"]


def test_search_counts_retrievals(api, user_id):
    note = create(api, content="The spare key is under the blue flowerpot", user_id=user_id)
    _search(api, "where is the spare key", k=1, filters={"user_id": user_id})
    # Recorded after the response is sent.
    for _ in range(50):
        got = api.get(f"/v1/memories/{note['id']}").json()
        if got["retrieval_count"] == 1:
            break
        time.sleep(0.1)
    assert got["retrieval_count"] == 1
    assert got["last_accessed"] > note["last_accessed"]


def _query_vectors(api) -> dict[str, float]:
    """The gateway's query-vector counts so far, by outcome (hit, shared, miss)."""
    text = api.get("/metrics").text
    counts = {}
    for outcome in ("hit", "shared", "miss"):
        line = rf'^amem_gateway_query_vectors_total{{outcome="{outcome}"}} (\S+)$'
        found = re.search(line, text, re.M)
        counts[outcome] = float(found.group(1)) if found else 0.0
    return counts


def test_a_repeated_query_is_not_embedded_again(api, stack, user_id):
    """The same query (up to spacing) is answered from the gateway's query vectors; identical
    queries at once share one embedding call."""
    ids = [create(api, content=c, user_id=user_id)["id"] for c in CORPUS]
    query = f"Which SQL engine backs our main datastore? {uuid.uuid4().hex}"
    only_mine = {"filters": {"user_id": user_id}, "mode": "dense"}
    before = _query_vectors(api)
    first = _search(api, query, k=3, **only_mine)
    again = _search(api, "  " + query.replace(" ", "   ") + "\n", k=3, **only_mine)
    after = _query_vectors(api)
    assert after["miss"] - before["miss"] == 1 and after["hit"] - before["hit"] == 1
    assert [r["memory"]["id"] for r in again] == [r["memory"]["id"] for r in first]
    assert first[0]["memory"]["id"] == ids[1]
    assert [r["score"] for r in again] == [r["score"] for r in first]

    other = f"When is the sprint retrospective? {uuid.uuid4().hex}"

    async def at_once() -> list[int]:
        headers = {"Authorization": f"Bearer {KEY_A}"}
        async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers) as client:
            replies = await asyncio.gather(
                *(
                    client.post("/v1/memories/search", json={"query": other, **only_mine})
                    for _ in range(8)
                )
            )
        return [r.status_code for r in replies]

    before = _query_vectors(api)
    assert asyncio.run(at_once()) == [200] * 8
    after = _query_vectors(api)
    assert after["miss"] - before["miss"] == 1  # one call to the embedding service
    assert sum(after[o] - before[o] for o in ("hit", "shared")) == 7
