"""Hybrid search: the gateway's BM25 index (Tantivy) fused with the dense ranking.

The index is a cache of the store, so these tests check that it stays true to the store:
writes through the gateway show at once, changes made by another process show after a pull,
and deletions are never served.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

from amem.core.model import Note
from amem.core.store import NoteStore
from amem.embedding.client import EmbeddingClient
from amem.gateway.lexical import LexicalIndex
from amem.gateway.service import fuse
from tests.conftest import create


def _search(api, query, **body) -> dict:
    r = api.post("/v1/memories/search", json={"query": query, **body})
    assert r.status_code == 200, r.text
    return r.json()


def _ids(api, query, **body) -> list[str]:
    return [h["memory"]["id"] for h in _search(api, query, **body)["results"]]


def _wait_loaded(api) -> None:
    """The tenant's BM25 index loads in the background on its first search."""
    for _ in range(100):
        if _search(api, "warm up", k=1)["mode"] == "hybrid":
            return
        time.sleep(0.1)
    raise AssertionError("the BM25 index never loaded")


def _word() -> str:
    """A word no model has seen and no other note holds."""
    return "zq" + uuid.uuid4().hex[:10]


def test_fusion_ranks_by_summed_reciprocal_ranks_and_breaks_ties_for_the_bm25_hit():
    fused = fuse(["d1", "both", "d3"], ["l1", "both"], rrf_k=20)
    assert list(fused) == ["both", "l1", "d1", "d3"]
    assert fused["both"] == 1 / 22 + 1 / 22 and fused["l1"] == fused["d1"] == 1 / 21
    # Only BM25 holds the query's rare token; the dense ranking's top note is merely nearest.
    assert list(fuse(["nearest", "b"], ["token"], rrf_k=20))[:2] == ["token", "nearest"]


def test_rare_word_is_found_by_words_not_meaning(api, user_id):
    word = _word()
    target = create(api, content=f"The wifi password for the cabin is {word}", user_id=user_id)
    for content in ("The cabin has a wood stove", "Wifi at the office is slow on Mondays"):
        create(api, content=content, user_id=user_id)
    _wait_loaded(api)
    only_mine = {"filters": {"user_id": user_id}}
    lexical = _search(api, word, mode="lexical", **only_mine)
    assert lexical["mode"] == "lexical"
    assert [h["memory"]["id"] for h in lexical["results"]] == [target["id"]]
    hybrid = _search(api, f"{word} please", **only_mine)
    assert hybrid["mode"] == "hybrid"
    assert hybrid["results"][0]["memory"]["id"] == target["id"]
    assert hybrid["results"][0]["similarity"] is not None
    scores = [h["score"] for h in hybrid["results"]]
    assert scores == sorted(scores, reverse=True)
    dense = _search(api, word, mode="dense", **only_mine)
    assert dense["mode"] == "dense"
    assert all(h["score"] == h["similarity"] for h in dense["results"])


def test_stemming_and_stop_words(api, user_id):
    target = create(api, content="Melanie painted a lake at sunrise", user_id=user_id)
    _wait_loaded(api)
    ids = _ids(api, "what did she paint", mode="lexical", filters={"user_id": user_id})
    assert ids == [target["id"]]
    assert _ids(api, "what did the", mode="lexical", filters={"user_id": user_id}) == []


def test_lexical_results_honour_every_filter(api, user_id):
    word = _word()
    mine = create(
        api,
        content=f"{word} ticket booked",
        user_id=user_id,
        tags=["travel"],
        category="plans",
        timestamp="2024-06-01T00:00:00Z",
    )
    create(api, content=f"{word} ticket lost", user_id=user_id + "-other", tags=["travel"])
    create(api, content=f"{word} ticket sold", user_id=user_id, tags=["sales"])
    create(api, content=f"{word} old ticket", user_id=user_id, timestamp="2019-01-01T00:00:00Z")
    _wait_loaded(api)
    flt = {
        "user_id": user_id,
        "tag": "travel",
        "category": "plans",
        "since": "2024-01-01T00:00:00Z",
        "until": "2025-01-01T00:00:00Z",
    }
    assert _ids(api, word, mode="lexical", filters=flt) == [mine["id"]]
    assert _ids(api, word, filters=flt) == [mine["id"]]


def test_lexical_index_never_crosses_tenants(api, api_b):
    word = _word()
    create(api, content=f"tenant A secret {word}")
    _wait_loaded(api_b)
    assert _ids(api_b, word, mode="lexical") == []
    assert _ids(api_b, word) == []


def test_gateway_writes_show_at_once(api, user_id):
    _wait_loaded(api)
    old, new = _word(), _word()
    note = create(api, content=f"The locker code is {old}", user_id=user_id)
    flt = {"filters": {"user_id": user_id}}
    assert _ids(api, old, mode="lexical", **flt) == [note["id"]]
    r = api.patch(f"/v1/memories/{note['id']}", json={"content": f"The locker code is {new}"})
    assert r.status_code == 200, r.text
    assert _ids(api, old, mode="lexical", **flt) == []
    assert _ids(api, new, mode="lexical", **flt) == [note["id"]]
    assert api.delete(f"/v1/memories/{note['id']}").status_code == 200
    assert _ids(api, new, mode="lexical", **flt) == []
    assert _ids(api, new, **flt) == []


def test_changes_by_other_processes_are_pulled(api, stack, user_id):
    """Another replica (here: the store written directly) adds, changes and deletes notes."""
    _wait_loaded(api)
    word, other, late_word = _word(), _word(), _word()
    late: list[str] = []
    keep = create(api, content=f"{word} stays", user_id=user_id)
    # Ranks first for `word` (three matches), so while the index still holds it, a lexical
    # search with k=1 finds nothing to serve.
    gone = create(api, content=f"{word} {word} {word} goes", user_id=user_id)

    async def behind_the_gateways_back() -> None:
        store = NoteStore("127.0.0.1", stack.chroma_port)
        embedder = EmbeddingClient(stack.embedding_target)
        changed = await store.get("tenant-a", keep["id"])
        changed.context = f"now also about {other}"
        changed.version += 1
        changed.updated_at = changed.updated_at.now(changed.updated_at.tzinfo)
        await store.update_fields("tenant-a", [changed], {"context", "version", "updated_at"})
        await store.delete("tenant-a", [gone["id"]])
        # A write stamped 10 s ago that lands only now (a slow write, a pod clock behind).
        stamp = datetime.now(UTC) - timedelta(seconds=10)
        note = Note(content=f"{late_word} arrived late", user_id=user_id, updated_at=stamp)
        vectors = (await embedder.embed([note.embedding_text()])).vectors
        await store.put("tenant-a", [note], vectors)
        late.append(note.id)
        await store.close()
        await embedder.close()

    asyncio.run(behind_the_gateways_back())
    flt = {"filters": {"user_id": user_id}}
    # A deleted note is never served, even before the index has noticed.
    assert gone["id"] not in _ids(api, word, **flt)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = _ids(api, other, mode="lexical", **flt) + _ids(api, late_word, mode="lexical")
        if found == [keep["id"], *late] and _ids(api, word, mode="lexical", k=1, **flt) == [
            keep["id"]
        ]:
            break
        time.sleep(0.3)
    assert _ids(api, late_word, mode="lexical") == late
    assert _ids(api, other, mode="lexical", **flt) == [keep["id"]]
    assert _ids(api, word, mode="lexical", k=1, **flt) == [keep["id"]]


def test_bad_mode_is_a_clear_422(api):
    r = api.post("/v1/memories/search", json={"query": "x", "mode": "fuzzy"})
    assert r.status_code == 422 and "mode" in r.json()["message"]


def test_equal_scores_are_ordered_by_id(stack):
    """Notes the query scores alike come back in id order, whatever order they were indexed
    in, so every replica (and a reloaded index) answers the same."""
    tenant = "ties-" + uuid.uuid4().hex[:8]
    word = _word()
    notes = [Note(content=f"{word} twin") for _ in range(30)]

    async def run() -> list[str] | None:
        store = NoteStore("127.0.0.1", stack.chroma_port)
        embedder = EmbeddingClient(stack.embedding_target)
        index = LexicalIndex(store)
        try:
            vectors = (await embedder.embed([n.embedding_text() for n in notes])).vectors
            await store.put(tenant, notes[:15], vectors[:15])
            assert await index.wait_loaded(tenant, timeout_s=30)
            await store.put(tenant, notes[15:], vectors[15:])
            await index.upsert(tenant, notes[15:][::-1])
            return await index.search(tenant, word, limit=10, flt=None)
        finally:
            await index.close()
            await embedder.close()
            await store.close()

    assert asyncio.run(run()) == sorted(n.id for n in notes)[:10]


def test_a_pull_larger_than_one_deadline_still_lands(stack):
    """Another process loads more notes than one read can fetch within the index's deadline:
    the pull reads them a page at a time, each page with its own deadline, and catches up (a
    pull that read them in one call timed out and retried forever). The store's own reads of
    that many ids put the deadline on each chunk, too."""
    tenant = "bulk-" + uuid.uuid4().hex[:8]
    first, last = _word(), _word()
    rng = np.random.default_rng(0)

    async def run() -> tuple[list[str], list[str], int, int]:
        writer = NoteStore("127.0.0.1", stack.chroma_port, timeout_s=60)
        # With this deadline one read of all 12,000 notes times out here; a page of 1,000 does not.
        store = NoteStore("127.0.0.1", stack.chroma_port, timeout_s=0.6)
        index = LexicalIndex(store, refresh_s=0.2)
        try:
            seed = Note(content="the tenant's first note")
            await writer.put(tenant, [seed], [_unit(rng, 1)[0]])
            assert await index.wait_loaded(tenant, timeout_s=30)
            ids = [seed.id]
            for start in range(0, 12_000, 1_000):
                notes = [Note(content=f"bulk note {start + i}") for i in range(1_000)]
                ids += [n.id for n in notes]
                if start == 0:
                    notes[0].content += f" {first}"
                if start == 11_000:
                    notes[-1].content += f" {last}"
                await writer.put(tenant, notes, _unit(rng, len(notes)))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if await index.search(tenant, last, limit=1, flt=None):
                    break
                await asyncio.sleep(0.2)
            return (
                await index.search(tenant, first, limit=1, flt=None) or [],
                await index.search(tenant, last, limit=1, flt=None) or [],
                await writer.count(tenant),
                len(await store.get_many(tenant, ids)),
            )
        finally:
            await index.close()
            await store.close()
            await writer.close()

    found_first, found_last, stored, read = asyncio.run(run())
    assert stored == read == 12_001
    assert len(found_first) == 1 and len(found_last) == 1


def _unit(rng, n: int) -> list[list[float]]:
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist()
