"""`make bench`'s measurements (amem.bench.perf): the embedding service, the write path, the
search path as a tenant grows, and the naive in-process way, each timed in a closed loop."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np

from amem.core.model import EvolutionStatus, Note
from amem.core.store import NoteStore
from amem.devstack import LocalStack
from amem.embedding.client import EmbeddingClient

KEY = "bench-key"
TENANT = "dev"
SEARCH_TENANT = "bench-search"


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def latency_summary(latencies_s: Sequence[float], wall_s: float) -> dict[str, float]:
    ms = [1000 * x for x in latencies_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "per_s": round(len(ms) / wall_s, 1),
    }


async def closed_loop(
    call: Callable[[int], Awaitable[None]], n: int, concurrency: int
) -> dict[str, float]:
    """Run `call(i)` for i < n from `concurrency` workers, each waiting for its last call."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            t = time.perf_counter()
            await call(i)
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latency_summary(latencies, time.perf_counter() - started)


# --- 1. embedding ---------------------------------------------------------------------------


def raw_encode(texts: list[str], **overrides: Any) -> tuple[dict[str, Any], Any]:
    """In-process `SentenceTransformer.encode` batch throughput: the model the service loads
    (same backend and settings), all texts in one call, which sorts them by length first."""
    from amem.embedding.encoder import Encoder, load_sentence_transformer
    from amem.embedding.settings import EmbeddingSettings

    settings = EmbeddingSettings(**overrides)
    encoder = Encoder(settings)
    model = load_sentence_transformer(settings, encoder.backend, encoder.device)
    batch = settings.max_batch_size
    model.encode(texts[:64], batch_size=batch, show_progress_bar=False)  # warm up
    started = time.perf_counter()
    model.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
    wall = time.perf_counter() - started
    return {
        "texts": len(texts),
        "batch_size": batch,
        "backend": encoder.backend,
        "texts_per_s": round(len(texts) / wall, 1),
    }, encoder


async def embedding_service(target: str, texts: list[str], levels: Sequence[int]) -> list[dict]:
    client = EmbeddingClient(target, timeout_s=60)
    await client.embed(texts[:8])
    out = []
    for c in levels:
        n = len(texts) if c > 1 else min(len(texts), 400)
        result = await closed_loop(lambda i: client.embed([texts[i]]), n, c)
        out.append({"concurrency": c, **result})
    await client.close()
    return out


# --- 2. write path --------------------------------------------------------------------------


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far."""
    import psutil

    return {name: sum(psutil.Process(pid).cpu_times()[:2]) for name, pid in pids.items()}


async def write_path(
    url: str,
    texts: list[str],
    levels: Sequence[tuple[int, int]],
    pids: dict[str, int] | None = None,
) -> list[dict]:
    """Ack latency and notes/s per level; with `pids`, also each process's CPU ms per note
    (the bench process itself, the load generator, as `client`)."""
    pids = {**(pids or {}), "client": os.getpid()}
    out = []
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as h:

        async def post(i: int) -> None:
            r = await h.post("/v1/memories", json={"content": texts[i % len(texts)]})
            r.raise_for_status()

        await post(0)
        for c, n in levels:
            before = cpu_seconds(pids)
            row = {"concurrency": c, **await closed_loop(post, n, c)}
            after = cpu_seconds(pids)
            row["cpu_ms_per_note"] = {k: round(1000 * (after[k] - before[k]) / n, 2) for k in pids}
            out.append(row)
    return out


def stack_pids(stack: LocalStack) -> dict[str, int]:
    return {name: proc.popen.pid for name, proc in stack.processes.items()}


# --- 3. search path -------------------------------------------------------------------------


def synthetic(base: np.ndarray, texts: list[str], start: int, stop: int, rng) -> tuple:
    idx = np.arange(start, stop) % len(texts)
    noisy = base[idx] + rng.normal(0, 0.02, (stop - start, base.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    now = datetime.now(UTC)
    notes = [
        Note(
            content=f"{texts[j]} [{start + k}]",
            status=EvolutionStatus.DONE,
            timestamp=now,
            created_at=now,
            updated_at=now,
        )
        for k, j in enumerate(idx)
    ]
    return notes, noisy


async def grow(
    store: NoteStore, base: np.ndarray, texts: list[str], start: int, stop: int, rng
) -> float:
    """Bulk-load notes start..stop, made a chunk at a time (a million notes and their vectors
    at once would take gigabytes here), with two chunks in flight so that making one overlaps
    storing the other. Returns the seconds it took."""
    started = time.perf_counter()
    pending: set[asyncio.Task] = set()
    for s in range(start, stop, 1000):
        notes, vectors = synthetic(base, texts, s, min(stop, s + 1000), rng)
        if len(pending) >= 2:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        pending.add(asyncio.create_task(store.put(SEARCH_TENANT, notes, vectors.tolist())))
    for task in pending:
        await task
    return time.perf_counter() - started


def rss_mib(pids: dict[str, int]) -> dict[str, float]:
    """Resident memory of each process, MiB."""
    import psutil

    mib = {name: psutil.Process(pid).memory_info().rss / 2**20 for name, pid in pids.items()}
    return {name: round(v) for name, v in mib.items()}


async def search_sweep(
    stack: LocalStack,
    base: np.ndarray,
    texts: list[str],
    queries: list[str],
    sizes: Sequence[int],
    rng,
    log: Callable[[str], None],
) -> tuple[list[dict], float]:
    """Grow one tenant through `sizes`, measuring dense and hybrid search at each size, in the
    steady state after its load, and each process's memory there. Returns the rows and the bulk
    load rate (notes/s)."""
    store = NoteStore("127.0.0.1", stack.chroma_port, timeout_s=300)
    loaded, load_s, rows = 0, 0.0, []
    try:
        for size in sizes:
            load_s += await grow(store, base, texts, loaded, size, rng)
            loaded = size
            log(f"loaded {size} notes ({loaded / load_s:.0f} notes/s so far)")
            await settled(stack.gateway_url, size)
            row: dict[str, Any] = {"notes": size}
            for mode in ("dense", "hybrid"):
                row[mode] = await search_path(stack.gateway_url, queries, mode, 150, 400)
            row["rss_mib"] = rss_mib(stack_pids(stack))
            rows.append(row)
            log(
                f"search at {size}: dense p95 {row['dense']['c1']['p95_ms']} ms, "
                f"hybrid p95 {row['hybrid']['c1']['p95_ms']} ms, memory {row['rss_mib']} MiB"
            )
    finally:
        await store.close()
    return rows, round(loaded / load_s, 1)


async def settled(url: str, size: int, margin_s: float = 30.0) -> None:
    """Wait for the steady state after a bulk load: the gateway's BM25 index holds the last
    note loaded (its content ends in its number, a unique word), and the window its pulls
    re-read after a write (`AMEM_LEXICAL_MARGIN_S`, 30 s) has passed."""
    headers = {"Authorization": f"Bearer {SEARCH_TENANT}-key"}
    body = {"query": str(size - 1), "k": 1, "mode": "lexical"}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as h:
        while True:
            r = await h.post("/v1/memories/search", json=body)
            if r.status_code == 200 and r.json()["results"]:
                break
            if time.monotonic() - started > 1800:
                raise TimeoutError(f"the BM25 index did not reach {size} notes in 30 minutes")
            await asyncio.sleep(0.5)
    await asyncio.sleep(max(0.0, margin_s - (time.monotonic() - started)))


async def search_path(
    url: str, queries: list[str], mode: str, n1: int, n16: int
) -> dict[str, dict]:
    headers = {"Authorization": f"Bearer {SEARCH_TENANT}-key"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60, limits=limits) as h:

        async def search(i: int) -> None:
            body = {"query": queries[i % len(queries)], "k": 10, "mode": mode}
            r = await h.post("/v1/memories/search", json=body)
            r.raise_for_status()
            if r.json()["mode"] != mode:
                raise RuntimeError(f"asked for {mode}, got {r.json()['mode']}")

        started = time.monotonic()
        while True:  # the BM25 index loads in the background on a tenant's first search
            try:
                r = await h.post("/v1/memories/search", json={"query": "warm up", "mode": mode})
                if r.status_code == 200 and r.json()["mode"] == mode:
                    break
            except httpx.TimeoutException:
                pass
            if time.monotonic() - started > 600:
                raise TimeoutError(f"no {mode} search within 10 minutes")
            await asyncio.sleep(0.5)
        return {
            "ready_s": round(time.monotonic() - started, 1),
            "c1": await closed_loop(search, n1, 1),
            "c16": await closed_loop(search, n16, 16),
        }


# --- 4. the naive way -----------------------------------------------------------------------


def naive(
    texts: list[str], queries: list[str], base: np.ndarray, size: int, n_writes: int, rng
) -> dict[str, Any]:
    """The A-mem library's way: one process, one encode and one Chroma call per note."""
    import chromadb
    from sentence_transformers import SentenceTransformer

    from amem.embedding.encoder import resolve_model_path
    from amem.embedding.settings import DEFAULT_MODEL

    model = SentenceTransformer(resolve_model_path(DEFAULT_MODEL), device="cpu")
    with tempfile.TemporaryDirectory(prefix="amem-naive-") as tmp:
        client = chromadb.PersistentClient(
            tmp, settings=chromadb.Settings(anonymized_telemetry=False)
        )
        col = client.create_collection("naive", configuration={"hnsw": {"space": "cosine"}})
        model.encode(["warm up"])
        latencies = []
        started = time.perf_counter()
        for i in range(n_writes):
            t = time.perf_counter()
            vector = model.encode([texts[i]], normalize_embeddings=True)
            col.add(ids=[f"w{i}"], documents=[texts[i]], embeddings=vector.tolist())
            latencies.append(time.perf_counter() - t)
        writes = latency_summary(latencies, time.perf_counter() - started)
        notes, vectors = synthetic(base, texts, 0, size, rng)
        for s in range(0, size, 1000):
            col.add(
                ids=[n.id for n in notes[s : s + 1000]],
                documents=[n.content for n in notes[s : s + 1000]],
                embeddings=vectors[s : s + 1000].tolist(),
            )
        latencies = []
        started = time.perf_counter()
        for i in range(200):
            t = time.perf_counter()
            vector = model.encode([queries[i % len(queries)]], normalize_embeddings=True)
            col.query(query_embeddings=vector.tolist(), n_results=10)
            latencies.append(time.perf_counter() - t)
        searches = latency_summary(latencies, time.perf_counter() - started)
    return {"backend": "torch", "write_c1": writes, "search_c1": searches, "notes": size}
