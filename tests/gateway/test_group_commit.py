"""Concurrent single writes share ChromaDB upserts, and every acknowledged one is stored."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.conftest import KEY_A


def _counts(api, histogram: str) -> tuple[float, float]:
    """(observations, sum) of one of the gateway's histograms so far."""
    text = api.get("/metrics").text
    count = re.search(rf"^{histogram}_count (\S+)$", text, re.M)
    total = re.search(rf"^{histogram}_sum (\S+)$", text, re.M)
    return (float(count.group(1)), float(total.group(1))) if count and total else (0.0, 0.0)


def _commit_counts(api) -> tuple[float, float]:
    """(upserts, notes) made by the gateway's group commit so far."""
    return _counts(api, "amem_gateway_commit_notes")


def _write_all(stack, contents: list[str], user_id: str) -> list[httpx.Response]:
    """Write every content at once, one request each."""

    async def run() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {KEY_A}"}
        async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers) as client:
            body = {"user_id": user_id}
            return await asyncio.gather(
                *[client.post("/v1/memories", json={**body, "content": c}) for c in contents]
            )

    return asyncio.run(run())


def test_concurrent_writes_share_upserts_and_all_land(api, stack, user_id):
    before = _commit_counts(api)
    replies = _write_all(stack, [f"parallel note {i}" for i in range(48)], user_id)
    assert [r.status_code for r in replies] == [201] * 48
    for r in replies:
        assert api.get(f"/v1/memories/{r.json()['id']}").status_code == 200
    after = _commit_counts(api)
    upserts, notes = after[0] - before[0], after[1] - before[1]
    assert notes == 48
    assert upserts < 48, (before, after)  # at least one upsert carried several writes


def _embed_counts(api) -> tuple[float, float]:
    """(embedding calls, texts) the gateway made for new notes so far."""
    return _counts(api, "amem_gateway_write_embed_texts")


TOPICS = [
    "The dentist appointment moved to Thursday at nine",
    "Our cat Miso refuses to eat the new salmon kibble",
    "The quarterly tax filing is due on the fifteenth",
    "Grandma's lasagna recipe uses nutmeg in the bechamel",
    "The VPN certificate expires at the end of March",
    "Marathon training: long run of thirty kilometres on Sunday",
    "The basement dehumidifier drains into the laundry sink",
    "Flight to Lisbon departs from terminal two at dawn",
    "The violin teacher wants scales practised every morning",
    "Kubernetes node pool upgrade is scheduled for Friday night",
    "The tomato seedlings need repotting before the frost ends",
    "Library books on medieval castles are overdue",
    "The bicycle's rear brake pads are worn down",
    "Sarah's wedding dress code is black tie optional",
    "The espresso machine descaling light keeps blinking",
    "Piano tuner comes on the first Monday of every month",
]


def test_concurrent_writes_share_embedding_calls_and_each_keeps_its_own_vector(api, stack, user_id):
    before = _embed_counts(api)
    replies = _write_all(stack, TOPICS, user_id)
    assert [r.status_code for r in replies] == [201] * len(TOPICS)
    after = _embed_counts(api)
    calls, texts = after[0] - before[0], after[1] - before[1]
    assert texts == len(TOPICS)
    assert calls < len(TOPICS), (before, after)  # at least one call carried several writes
    # Each note was stored with its own text's vector: a dense search for that text finds it
    # first, with a cosine similarity of 1.
    for text, reply in zip(TOPICS, replies, strict=True):
        r = api.post(
            "/v1/memories/search",
            json={"query": text, "k": 1, "mode": "dense", "filters": {"user_id": user_id}},
        )
        hit = r.json()["results"][0]
        assert hit["memory"]["id"] == reply.json()["id"], text
        assert hit["similarity"] > 0.99
