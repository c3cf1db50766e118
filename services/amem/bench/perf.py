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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from amem.bench.locomo import DEFAULT_DATA, sessions
from amem.bench.perf_paths import (
    KEY,
    SEARCH_TENANT,
    TENANT,
    embedding_service,
    naive,
    raw_encode,
    search_sweep,
    stack_pids,
    write_path,
)
from amem.bench.perf_paths import grow as grow  # amem.bench.profile imports it from here
from amem.bench.perf_report import markdown, plot, scale_markdown
from amem.devstack import LocalStack


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
