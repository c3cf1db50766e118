"""`make bench`: how fast amem answers, next to the naive in-process way, on this machine.

Starts the real local stack (ChromaDB, embedding, evolution with the offline backend, gateway)
and measures, writing `bench.json` and `bench.md` into --out (and a PNG of search latency
against tenant size into --plot):

1. the embedding service under concurrency (C clients, one text per call) next to the raw
   in-process `SentenceTransformer.encode` batch throughput on the same texts;
2. the search path in one tenant as it grows (10k, 30k, 100k notes by default), dense and
   hybrid: p50/p95 at C = 1 and queries/s at C = 16. Notes are bulk-loaded straight into the
   store with precomputed embeddings: the corpus' real embeddings, each reused with a little
   Gaussian noise (synthetic vectors, so that setup takes minutes, not hours);
3. the write path: REST `POST /v1/memories`, ack latency and notes/s at C = 1 and 16, with the
   offline evolution running (measured last: evolving what it writes keeps the CPU busy) and
   on a second stack with no evolution service (the acknowledgement path alone);
4. the A-mem library's way in one process: sentence-transformers (torch) and an in-process
   ChromaDB client, one call per note.

It reports; it never fails on a number. Texts are LoCoMo's dialogue turns and questions (the
same file as `make eval`), or generated sentences when that file is missing.

With --scale (`make bench-scale`) it measures only the search path, in a tenant grown to
10k, 100k and 1M notes by default, with each process's resident memory at every size, into
`scale.json`, `scale.md` and `search-scale.png`.

    python -m amem.bench.perf [--data PATH] [--sizes 10000,30000,100000] [--out DIR] [--scale]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from amem.bench.locomo import DEFAULT_DATA, sessions
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


def corpus(data: Path) -> tuple[list[str], list[str]]:
    """(texts, queries): LoCoMo's turns and questions, or generated sentences."""
    if data.exists():
        conversations = json.loads(data.read_text())
        texts = [m["content"] for c in conversations for s in sessions(c) for m in s]
        queries = [qa["question"] for c in conversations for qa in c["qa"]]
        return texts, queries
    rng = np.random.default_rng(0)
    words = "memory agent note link context tag search vector paint trip dog book song".split()
    texts = [" ".join(rng.choice(words, 12)) for _ in range(3000)]
    return texts, [" ".join(rng.choice(words, 6)) for _ in range(500)]


def machine(backend: str) -> dict[str, Any]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "embedding_backend": backend,
    }


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


# --- report ---------------------------------------------------------------------------------


def markdown(r: dict[str, Any]) -> str:
    m, e = r["machine"], r["embedding"]
    lines = [
        f"# amem benchmark, {r['date']}",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python "
        f"{m['python']}, embedding backend {m['embedding_backend']}; took {r['took_s']} s.",
        "",
        "## Embedding service (one text per call)",
        "",
        "Raw in-process `SentenceTransformer.encode` batch throughput (all texts in one call, "
        f"which sorts them by length): **{e['raw']['texts_per_s']} texts/s** "
        f"({e['raw']['texts']} texts, batch {e['raw']['batch_size']}); with the `onnx-int8` "
        f"backend {e['raw_int8']['texts_per_s']} texts/s.",
        "",
        "| clients | texts/s | ratio to raw | p50 ms | p95 ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    raw = r["embedding"]["raw"]["texts_per_s"]
    for row in r["embedding"]["service"]:
        lines.append(
            f"| {row['concurrency']} | {row['per_s']} | {row['per_s'] / raw:.2f} | "
            f"{row['p50_ms']} | {row['p95_ms']} |"
        )
    lines += [
        "",
        "## Write path (`POST /v1/memories`, one note per call)",
        "",
        "| clients | notes/s | ratio to raw embedding | p50 ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in (
        ("offline evolution running", r["write"]),
        ("no evolution service", r["write_no_evolution"]),
    ):
        for row in rows:
            lines.append(
                f"| {row['concurrency']} ({label}) | {row['per_s']} | {row['per_s'] / raw:.2f} | "
                f"{row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} |"
            )
    names = ["embedding", "chromadb", "gateway", "evolution", "client"]
    lines += [
        "",
        "CPU per note while writing at C = 16, by process (ms; `client` is the load generator). "
        f"{m['cores']} cores at this CPU per note cap the rate at cores x 1000 / total notes/s:",
        "",
        "| run | " + " | ".join(names) + " | total | cap notes/s |",
        "|---|" + "---:|" * (len(names) + 2),
    ]
    for label, rows in (
        ("offline evolution running", r["write"]),
        ("no evolution service", r["write_no_evolution"]),
    ):
        for row in rows:
            cpu = row.get("cpu_ms_per_note")
            if row["concurrency"] != 16 or not cpu:
                continue
            total = sum(cpu.values())
            cells = " | ".join(str(cpu.get(n, "-")) for n in names)
            cap = m["cores"] * 1000 / total
            lines.append(f"| {label} | {cells} | {total:.1f} | {cap:.0f} |")
    lines += ["", *search_table(r), ""]
    n = r["naive"]
    lines += [
        "## The naive way (A-mem library style: one process, torch, in-process ChromaDB)",
        "",
        f"- write, one note per call: p50 {n['write_c1']['p50_ms']} ms, p95 "
        f"{n['write_c1']['p95_ms']} ms, {n['write_c1']['per_s']} notes/s",
        f"- search at {n['notes']:,} notes: p50 {n['search_c1']['p50_ms']} ms, p95 "
        f"{n['search_c1']['p95_ms']} ms",
        "",
    ]
    return "\n".join(lines)


def search_table(r: dict[str, Any]) -> list[str]:
    """The search path's section of a report: latency by size and mode, memory by size."""
    lines = [
        "## Search path (`POST /v1/memories/search`, k = 10, one tenant)",
        "",
        "| notes | mode | p50 ms (C=1) | p95 ms (C=1) | queries/s (C=16) | p95 ms (C=16) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in r["search"]:
        for mode in ("dense", "hybrid"):
            s = row[mode]
            lines.append(
                f"| {row['notes']:,} | {mode} | {s['c1']['p50_ms']} | {s['c1']['p95_ms']} | "
                f"{s['c16']['per_s']} | {s['c16']['p95_ms']} |"
            )
    names = sorted({n for row in r["search"] for n in row.get("rss_mib", {})})
    if names:
        lines += [
            "",
            "Resident memory by process at each size, MiB:",
            "",
            "| notes | " + " | ".join(names) + " |",
            "|---:|" + "---:|" * len(names),
        ]
        for row in r["search"]:
            cells = " | ".join(str(row.get("rss_mib", {}).get(n, "-")) for n in names)
            lines.append(f"| {row['notes']:,} | {cells} |")
    lines += ["", f"Bulk load into the store: {r['bulk_load_notes_per_s']} notes/s."]
    return lines


def scale_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join(
        [
            f"# amem search at scale, {r['date']}",
            "",
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Python "
            f"{m['python']}, embedding backend {m['embedding_backend']}; took {r['took_s']} s. "
            "Notes are synthetic: the corpus' real embeddings, each reused with a little "
            "Gaussian noise, bulk-loaded straight into the store; queries are real questions "
            "through the REST API. No evolution service runs.",
            "",
            *search_table(r),
            "",
        ]
    )


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    sizes = [row["notes"] for row in r["search"]]
    for mode, colour in (("dense", "tab:blue"), ("hybrid", "tab:orange")):
        for q, style in (("p50_ms", "-"), ("p95_ms", "--")):
            ys = [row[mode]["c1"][q] for row in r["search"]]
            ax.plot(sizes, ys, style, color=colour, marker="o", label=f"{mode} {q[:3]}")
    ax.set_xscale("log")
    ax.set_xlabel("notes in the tenant")
    ax.set_ylabel("search latency, ms (REST, C=1)")
    ax.set_title(f"amem search latency ({r['machine']['cores']} cores, {r['date']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


# --- main -----------------------------------------------------------------------------------


async def _run(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    texts, queries = corpus(args.data)
    rng = np.random.default_rng(0)
    started = time.monotonic()
    raw_int8, _ = raw_encode(texts[:2048], backend="onnx-int8")
    raw, encoder = raw_encode(texts[:2048])
    log(f"raw encode: {raw['texts_per_s']} texts/s ({raw_int8['texts_per_s']} with onnx-int8)")
    base = encoder.encode(texts, batch_size=64).vectors
    del encoder

    workdir = Path(tempfile.mkdtemp(prefix="amem-bench-"))
    keys = {TENANT: KEY, SEARCH_TENANT: f"{SEARCH_TENANT}-key"}
    stack = LocalStack.for_tenants(workdir / "stack", keys)
    stack.start()
    result: dict[str, Any] = {}
    try:
        service = await embedding_service(stack.embedding_target, texts[:2048], (1, 8, 32, 64))
        result["embedding"] = {"raw": raw, "raw_int8": raw_int8, "service": service}
        log(f"embedding service: {[(s['concurrency'], s['per_s']) for s in service]}")
        rows, rate = await search_sweep(stack, base, texts, queries, args.sizes, rng, log)
        result["search"] = rows
        result["bulk_load_notes_per_s"] = rate
        # Last: the notes written here keep the offline evolution busy for minutes.
        result["write"] = await write_path(
            stack.gateway_url, texts, ((1, 300), (16, 1000)), stack_pids(stack)
        )
        log(f"write path: {[(w['concurrency'], w['p95_ms'], w['per_s']) for w in result['write']]}")
    finally:
        stack.stop()
    # The acknowledgement path alone: the same writes with no evolution service competing for
    # the CPU (notes stay pending).
    bare = LocalStack.for_tenants(workdir / "bare", keys, evolution=False)
    bare.start()
    try:
        result["write_no_evolution"] = await write_path(
            bare.gateway_url, texts, ((1, 300), (16, 1000)), stack_pids(bare)
        )
        bare_rows = result["write_no_evolution"]
        log(f"write path, no evolution: {[(w['p95_ms'], w['per_s']) for w in bare_rows]}")
    finally:
        bare.stop()
    result["naive"] = naive(texts, queries, base, args.sizes[0], 300, rng)
    log(f"naive: {result['naive']}")
    result["machine"] = machine(raw["backend"])
    result["date"] = datetime.now(UTC).date().isoformat()
    result["took_s"] = round(time.monotonic() - started)
    return result


async def _scale(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    """Only the search path, grown to larger sizes: `make bench-scale`."""
    from amem.embedding.encoder import Encoder
    from amem.embedding.settings import EmbeddingSettings

    texts, queries = corpus(args.data)
    rng = np.random.default_rng(0)
    started = time.monotonic()
    encoder = Encoder(EmbeddingSettings())
    base, backend = encoder.encode(texts, batch_size=64).vectors, encoder.backend
    del encoder
    workdir = Path(tempfile.mkdtemp(prefix="amem-bench-scale-"))
    keys = {SEARCH_TENANT: f"{SEARCH_TENANT}-key"}
    stack = LocalStack.for_tenants(workdir, keys, evolution=False)
    stack.start()
    try:
        rows, rate = await search_sweep(stack, base, texts, queries, args.sizes, rng, log)
    finally:
        stack.stop()
    return {
        "search": rows,
        "bulk_load_notes_per_s": rate,
        "machine": machine(backend),
        "date": datetime.now(UTC).date().isoformat(),
        "took_s": round(time.monotonic() - started),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amem.bench.perf", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("LOCOMO", DEFAULT_DATA)))
    parser.add_argument(
        "--sizes",
        type=lambda s: sorted(int(x) for x in s.split(",")),
        help="tenant sizes for the search path, comma-separated (default 10000,30000,100000; "
        "with --scale 10000,100000,1000000)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="measure only the search path, at larger sizes, into scale.json, scale.md and "
        "search-scale.png",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/bench"))
    parser.add_argument("--plot", type=Path, help="the latency curve's PNG (default under --out)")
    args = parser.parse_args(argv)
    if args.sizes is None:
        args.sizes = [10_000, 100_000, 1_000_000] if args.scale else [10_000, 30_000, 100_000]
    if args.scale:
        name, run, report = "scale", _scale, scale_markdown
    else:
        name, run, report = "bench", _run, markdown
    result = asyncio.run(run(args, lambda m: print(m, flush=True)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(report(result))
    default_plot = "search-scale.png" if args.scale else "search-latency.png"
    plot(result, args.plot or args.out / default_plot)
    print(report(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
