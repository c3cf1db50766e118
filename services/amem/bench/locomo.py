"""`make eval`: retrieval quality on LoCoMo through the REST API.

Starts a fresh local stack (ChromaDB, embedding, evolution with the offline backend unless an
LLM is configured, gateway), stores every dialogue turn of each conversation as a memory
("speaker: text", the session's date as the note's timestamp; one tenant per conversation;
each session as one conversation batch, so each turn `follows` the one before), waits until
evolution has settled, asks every question of categories 1-4 through
`POST /v1/memories/search` in each search mode (hybrid, dense, lexical), and reports recall@k
of the evidence turns, overall and per category; the first mode's figures are the headline.
The last line printed is one JSON object.

    python -m amem.bench.locomo [--data PATH] [--no-evolution] [--modes M1,M2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from amem.devstack import LocalStack

KS = (1, 5, 10, 25)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
DEFAULT_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "locomo-dev.json"


def _session_date(text: str) -> datetime:
    # LoCoMo writes e.g. "1:56 pm on 8 May, 2023".
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def sessions(conversation: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Each session's turns as memories to create: content, timestamp, dia_id in metadata."""
    out = []
    c = conversation["conversation"]
    n = 1
    while f"session_{n}" in c:
        when = _session_date(c[f"session_{n}_date_time"]).isoformat()
        out.append(
            [
                {
                    "content": f"{turn['speaker']}: {turn['text']}",
                    "timestamp": when,
                    "metadata": {"dia_id": turn["dia_id"]},
                }
                for turn in c[f"session_{n}"]
            ]
        )
        n += 1
    return out


def evidence_ids(qa: dict[str, Any]) -> set[str]:
    ids = set()
    for item in qa.get("evidence", []):
        ids.update(part.strip() for part in str(item).replace(",", ";").split(";") if part.strip())
    return ids


def _wait_settled(client: httpx.Client, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page = client.get("/v1/memories", params={"status": "pending", "limit": 1}).json()
        if not page["memories"]:
            return
        time.sleep(1)
    raise TimeoutError("evolution did not settle in time")


def _store_session(client: httpx.Client, memories: list[dict[str, Any]], max_batch: int) -> None:
    """One session as conversation batches: each turn follows the one before it."""
    previous = None
    for start in range(0, len(memories), max_batch):
        chunk = [dict(m) for m in memories[start : start + max_batch]]
        if previous:
            chunk[0]["follows"] = previous
        r = client.post("/v1/memories/batch", json={"memories": chunk, "conversation": True})
        r.raise_for_status()
        previous = r.json()["memories"][-1]["id"]


def _wait_hybrid(client: httpx.Client, timeout_s: float) -> None:
    """Until this gateway has loaded the tenant's BM25 index (hybrid search answers hybrid)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.post("/v1/memories/search", json={"query": "warm up", "k": 1})
        r.raise_for_status()
        if r.json()["mode"] == "hybrid":
            return
        time.sleep(0.2)
    raise TimeoutError("the BM25 index did not load in time")


def _ask(
    clients: list[httpx.Client], conversations: list[dict[str, Any]], mode: str
) -> dict[str, Any]:
    """Every question of categories 1-4 in one search mode: recall@k and latency."""
    hits: dict[int, list[float]] = {k: [] for k in KS}
    by_category: dict[str, dict[int, list[float]]] = defaultdict(lambda: {k: [] for k in KS})
    latencies: list[float] = []
    for client, conversation in zip(clients, conversations, strict=True):
        for qa in conversation["qa"]:
            category = qa.get("category")
            wanted = evidence_ids(qa)
            if category not in CATEGORIES or not wanted:
                continue
            t = time.perf_counter()
            r = client.post(
                "/v1/memories/search", json={"query": qa["question"], "k": max(KS), "mode": mode}
            )
            latencies.append(time.perf_counter() - t)
            r.raise_for_status()
            if r.json()["mode"] != mode:
                raise RuntimeError(f"asked for a {mode} search, got {r.json()['mode']}")
            found = [h["memory"]["metadata"].get("dia_id") for h in r.json()["results"]]
            for k in KS:
                recall = len(wanted & set(found[:k])) / len(wanted)
                hits[k].append(recall)
                by_category[CATEGORIES[category]][k].append(recall)

    def summary(values: dict[int, list[float]]) -> dict[str, float]:
        return {f"recall@{k}": round(statistics.fmean(v), 3) for k, v in values.items() if v}

    latencies.sort()
    return {
        "questions": len(hits[KS[0]]),
        **summary(hits),
        "per_category": {
            name: {"questions": len(v[KS[0]]), **summary(v)}
            for name, v in sorted(by_category.items())
        },
        "search_latency_ms": {
            "p50": round(1000 * latencies[len(latencies) // 2], 1),
            "p95": round(1000 * latencies[int(len(latencies) * 0.95)], 1),
        },
    }


def run(
    data: Path, *, evolution: bool, modes: Sequence[str] = ("hybrid",), log=print
) -> dict[str, Any]:
    """Store, settle, then ask in each mode; the first mode's figures are the headline."""
    conversations = json.loads(data.read_text())
    keys = {f"locomo-{i}": f"key-{i}" for i in range(len(conversations))}
    workdir = Path(tempfile.mkdtemp(prefix="amem-eval-"))
    stack = LocalStack.for_tenants(
        workdir, keys, evolution=evolution, env={"AMEM_MAX_WAIT_S": "60"}
    )
    timings: dict[str, float] = {}
    results: dict[str, dict[str, Any]] = {}
    stack.start()
    try:
        clients = [
            httpx.Client(
                base_url=stack.gateway_url,
                headers={"Authorization": f"Bearer {keys[f'locomo-{i}']}"},
                timeout=120,
            )
            for i in range(len(conversations))
        ]
        started = time.monotonic()
        stored = 0
        for client, conversation in zip(clients, conversations, strict=True):
            for memories in sessions(conversation):
                _store_session(client, memories, max_batch=100)
                stored += len(memories)
        timings["store_s"] = round(time.monotonic() - started, 1)
        log(f"stored {stored} turns in {timings['store_s']} s")
        if evolution:
            started = time.monotonic()
            for client in clients:
                _wait_settled(client, timeout_s=1800)
            timings["evolution_s"] = round(time.monotonic() - started, 1)
            log(f"evolution settled in {timings['evolution_s']} s")
        if set(modes) - {"dense"}:
            for client in clients:
                _wait_hybrid(client, timeout_s=120)
        for mode in modes:
            results[mode] = _ask(clients, conversations, mode)
            log(f"{mode}: " + json.dumps({k: v for k, v in results[mode].items() if "@" in k}))
        for client in clients:
            client.close()
    finally:
        stack.stop()

    return {
        **results[modes[0]],
        "mode": modes[0],
        "modes": {
            m: {k: v for k, v in r.items() if k != "per_category"} for m, r in results.items()
        },
        "evolution": "offline"
        if evolution and not os.environ.get("AMEM_EVOLUTION_LLM_BASE_URL")
        else ("llm" if evolution else "off"),
        "timings_s": timings,
        "data": str(data),
        "machine": {
            "cores": os.cpu_count(),
            "embedding_backend": os.environ.get("AMEM_EMBEDDING_BACKEND", "auto"),
        },
        "date": datetime.now(UTC).date().isoformat(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amem.bench.locomo", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("LOCOMO", DEFAULT_DATA)))
    parser.add_argument("--no-evolution", action="store_true", help="raw notes, no enrichment")
    parser.add_argument(
        "--modes",
        type=lambda v: [m for m in v.split(",") if m],
        default=["hybrid", "dense", "lexical"],
        help="search modes to ask in, comma-separated; the first is the headline",
    )
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"no LoCoMo file at {args.data}: pass --data or LOCOMO=<path>", file=sys.stderr)
        return 2
    result = run(
        args.data.resolve(),
        evolution=not args.no_evolution,
        modes=args.modes,
        log=lambda m: print(m, flush=True),
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
