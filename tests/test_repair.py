"""The store's audit and repair (core/repair.py) on a stack of its own (ChromaDB, gateway,
evolution; the session's embedding service): `amem doctor` finds notes that their own vector
no longer finds, the evolution service's sampled audit reports them as a metric, and `amem
reindex` rebuilds the tenant's collection while writes go on, losing none of them.

The damage is a FAULT INJECTION: the tenant's collection is created with an HNSW graph too
sparse to find most of its notes (2 neighbours a node, search breadth 1), standing for the
links ChromaDB's index loses after deletes, upserts and crashes (chroma-core/chroma#7758),
which no test can produce on demand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import chromadb
import httpx
import numpy as np
import pytest

from amem.core.model import EvolutionStatus, Note
from amem.core.store import to_metadata
from amem.devstack import LocalStack
from tests.conftest import KEY_A, client_for, eventually

DAMAGED = 400
KEY_M = "key-tenant-m-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def rstack(stack: LocalStack, tmp_path_factory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("repair")
    s = LocalStack.for_tenants(
        root,
        {"tenant-a": KEY_A, "tenant-m": KEY_M},
        embedding_from=stack,
        env={"AMEM_EVOLUTION_SCAN_INTERVAL_S": "1", "AMEM_EVOLUTION_AUDIT_INTERVAL_S": "1"},
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


def amem(stack: LocalStack, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        AMEM_CHROMA_PORT=str(stack.chroma_port),
        AMEM_EVOLUTION_TARGET=stack.evolution_target,
    )
    return subprocess.run(
        [sys.executable, "-m", "amem", *args], env=env, capture_output=True, timeout=600
    )


def _damage(stack: LocalStack) -> list[str]:
    """tenant-a's collection, created before anything opened it, with a crippled index and
    DAMAGED evolved notes of random unit vectors; returns their ids."""
    client = chromadb.HttpClient(host="127.0.0.1", port=stack.chroma_port)
    col = client.create_collection(
        "amem-tenant-a",
        embedding_function=None,
        configuration={
            "hnsw": {"space": "cosine", "max_neighbors": 2, "ef_search": 1, "ef_construction": 1}
        },
        metadata={"amem_tenant": "tenant-a"},
    )
    rng = np.random.default_rng(20261203)
    vectors = rng.normal(size=(DAMAGED, 384))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    notes = [
        Note(content=f"stored note {i}", status=EvolutionStatus.DONE, context="old")
        for i in range(DAMAGED)
    ]
    for start in range(0, DAMAGED, 100):
        batch = notes[start : start + 100]
        col.add(
            ids=[n.id for n in batch],
            embeddings=vectors[start : start + 100].tolist(),
            documents=[n.content for n in batch],
            metadatas=[{k: v for k, v in to_metadata(n).items() if v is not None} for n in batch],
        )
    return [n.id for n in notes]


def _doctor(stack: LocalStack) -> tuple[int, dict]:
    done = amem(stack, "doctor", "--tenant", "tenant-a", "--json")
    return done.returncode, json.loads(done.stdout)["tenants"]["tenant-a"]


def _unreachable_gauge(stack: LocalStack) -> float:
    metrics = httpx.get(f"http://127.0.0.1:{stack.evolution_metrics_port}/metrics").text
    [line] = [m for m in metrics.splitlines() if m.startswith("amem_store_unreachable_notes ")]
    return float(line.split()[1])


def test_doctor_finds_unreachable_notes_and_reindex_repairs_them_while_writes_go_on(rstack):
    damaged = _damage(rstack)
    code, report = _doctor(rstack)
    assert code == 1
    assert report["checked"] == DAMAGED
    assert len(report["unreachable"]) > DAMAGED // 4, len(report["unreachable"])
    assert set(report["unreachable"]) <= set(damaged)
    assert report["dangling_links"] == {} and report["dangling_follows"] == {}
    # The evolution service's sampled audit sees it too.
    eventually(lambda: _unreachable_gauge(rstack) > 0, "the sampled audit found nothing")

    acked: dict[str, str] = {}  # id -> content, every write the gateway acknowledged
    patched: dict[str, str] = {}  # id -> category set by an acknowledged PATCH
    failures: list[str] = []
    stop = threading.Event()

    def write_on() -> None:
        with client_for(rstack, KEY_A) as api:
            i = 0
            while not stop.is_set():
                content = f"written during the rebuild {i} {uuid.uuid4().hex[:8]}"
                r = api.post("/v1/memories", json={"content": content})
                if r.status_code == 201:
                    acked[r.json()["id"]] = content
                else:
                    failures.append(r.text)
                target = damaged[i % DAMAGED]
                r = api.patch(f"/v1/memories/{target}", json={"category": f"c{i}"})
                if r.status_code == 200:
                    patched[target] = f"c{i}"
                else:
                    failures.append(r.text)
                i += 1

    writer = threading.Thread(target=write_on)
    writer.start()
    try:
        time.sleep(1)
        done = amem(rstack, "reindex", "--tenant", "tenant-a")
        time.sleep(1)
    finally:
        stop.set()
        writer.join(60)
    assert done.returncode == 0, done.stderr.decode()
    assert b"notes in the rebuilt collection" in done.stdout
    assert not failures, failures[:3]
    assert len(acked) > 5 and len(patched) > 5, "too little load to prove anything"

    with client_for(rstack, KEY_A) as api:
        for note_id, content in acked.items():
            r = api.get(f"/v1/memories/{note_id}")
            assert r.status_code == 200, f"acknowledged note lost in the rebuild: {note_id}"
            assert r.json()["content"] == content
        for note_id, category in patched.items():
            assert api.get(f"/v1/memories/{note_id}").json()["category"] == category
    code, report = _doctor(rstack)
    assert code == 0, report
    assert report["unreachable"] == [] and report["notes"] == DAMAGED + len(acked)
    eventually(lambda: _unreachable_gauge(rstack) == 0, "the sampled audit still finds some")
    client = chromadb.HttpClient(host="127.0.0.1", port=rstack.chroma_port)
    names = {c.name for c in client.list_collections()}
    assert "amem-tenant-a" in names and not any(n.startswith("amemrx-") for n in names)


def test_reindex_of_an_unknown_tenant_is_refused(rstack):
    done = amem(rstack, "reindex", "--tenant", "no-such-tenant")
    assert done.returncode == 1 and b"no tenant 'no-such-tenant'" in done.stderr


def test_a_write_through_a_handle_of_a_swapped_out_collection_lands_in_the_live_one(rstack):
    """The gateways create notes outside the tenant's writer, through a cached collection
    handle: one that reaches the collection a rebuild has just renamed away must write again
    to the live one, or the note would be deleted with the old collection."""
    import asyncio

    from amem.core.store import NoteStore

    async def scenario() -> tuple[list[str], list[str]]:
        store = NoteStore("127.0.0.1", rstack.chroma_port)
        client = await store.client()
        first = Note(content="before the swap")
        await store.put("tenant-swap", [first], [[0.1] * 384])  # the handle is now cached
        old = await client.get_collection("amem-tenant-swap")
        await old.modify(name="amemrx-tenant-swap-old")  # what a rebuild does, step by step
        await store.create_collection("amem-tenant-swap", "tenant-swap")
        late = Note(content="through the stale handle")
        await store.put("tenant-swap", [late], [[0.2] * 384])
        live = await client.get_collection("amem-tenant-swap")
        got = (await live.get(include=[]))["ids"]
        await client.delete_collection("amemrx-tenant-swap-old")
        await client.delete_collection("amem-tenant-swap")
        return got, [late.id]

    live_ids, wanted = asyncio.run(scenario())
    assert live_ids == wanted


MOVED = [
    "The staging cluster is upgraded every Tuesday night",
    "Priya prefers tea over coffee in the afternoon",
    "The invoice service retries failed payments three times",
]


def test_vectors_of_another_model_are_refused_until_the_tenant_is_re_embedded(rstack, stack):
    """A collection records the model of its vectors; a gateway whose embedding service serves
    another refuses to search or write it, naming both and the way out, and `amem reindex
    --re-embed` embeds every memory again with the model now serving, online."""
    client = chromadb.HttpClient(host="127.0.0.1", port=rstack.chroma_port)
    # The tenant as another model left it: its record, and vectors that mean nothing here.
    col = client.create_collection(
        "amem-tenant-m",
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"amem_tenant": "tenant-m", "amem_model": "another/model-v0"},
    )
    notes = [Note(content=c, status=EvolutionStatus.DONE) for c in MOVED]
    rng = np.random.default_rng(17)
    vectors = rng.normal(size=(len(notes), 384))
    col.add(
        ids=[n.id for n in notes],
        embeddings=(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist(),
        documents=[n.content for n in notes],
        metadatas=[{k: v for k, v in to_metadata(n).items() if v is not None} for n in notes],
    )
    with client_for(rstack, KEY_M) as api:
        dense = {"query": "When is staging upgraded?", "mode": "dense", "k": 3}
        refused = api.post("/v1/memories/search", json=dense)
        assert refused.status_code == 503, refused.text
        message = refused.json()["message"]
        assert "another/model-v0" in message
        assert "amem reindex --tenant tenant-m --re-embed" in message
        assert api.post("/v1/memories", json={"content": "new"}).status_code == 503
        assert api.get(f"/v1/memories/{notes[0].id}").status_code == 200  # no vector: served

        done = amem(rstack, "reindex", "--tenant", "tenant-m", "--re-embed")
        assert done.returncode == 0, done.stderr.decode()
        assert b"re-embedding" in done.stdout

        moved = client.get_collection("amem-tenant-m").metadata
        assert moved["amem_model"] not in (None, "another/model-v0")
        assert "amem_model_next" not in moved
        found = api.post("/v1/memories/search", json=dense)
        assert found.status_code == 200, found.text
        assert found.json()["results"][0]["memory"]["id"] == notes[0].id
        assert api.post("/v1/memories", json={"content": "new"}).status_code == 201
