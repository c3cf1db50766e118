"""`make eval`: retrieval quality on LoCoMo through the REST API.

Starts a fresh local stack (ChromaDB, embedding, evolution with the offline backend unless an
LLM is configured, gateway), stores every dialogue turn of each conversation as a memory
("speaker: text", the session's date as the note's timestamp; one tenant per conversation),
waits until evolution has settled, asks every question of categories 1-4 through
`POST /v1/memories/search`, and reports recall@k of the evidence turns, overall and per
category. The last line printed is one JSON object.

    python -m amem.bench.locomo [--data PATH] [--no-evolution] [--out FILE]
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from amem.devstack import LocalStack, free_port

KS = (1, 5, 10, 25)
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
DEFAULT_DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "locomo-dev.json"


def _session_date(text: str) -> datetime:
    # LoCoMo writes e.g. "1:56 pm on 8 May, 2023".
    return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def turns(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    """Every turn as a memory to create: content, timestamp and its dia_id in metadata."""
    out = []
    c = conversation["conversation"]
    n = 1
    while f"session_{n}" in c:
        when = _session_date(c[f"session_{n}_date_time"]).isoformat()
        for turn in c[f"session_{n}"]:
            out.append(
                {
                    "content": f"{turn['speaker']}: {turn['text']}",
                    "timestamp": when,
                    "metadata": {"dia_id": turn["dia_id"]},
                }
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


def run(data: Path, *, evolution: bool, log=print) -> dict[str, Any]:
    conversations = json.loads(data.read_text())
    keys = {f"locomo-{i}": f"key-{i}" for i in range(len(conversations))}
    workdir = Path(tempfile.mkdtemp(prefix="amem-eval-"))
    stack = LocalStack(
        data_dir=workdir / "data",
        gateway_port=free_port(),
        dev_api_key=None,
        log_dir=workdir / "logs",
        evolution=evolution,
        extra_env={"AMEM_API_KEYS": json.dumps(keys), "AMEM_MAX_WAIT_S": "60"},
    )
    hits: dict[int, list[float]] = {k: [] for k in KS}
    by_category: dict[str, dict[int, list[float]]] = defaultdict(lambda: {k: [] for k in KS})
    latencies: list[float] = []
    timings: dict[str, float] = {}
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
            memories = turns(conversation)
            for start in range(0, len(memories), 100):
                r = client.post(
                    "/v1/memories/batch", json={"memories": memories[start : start + 100]}
                )
                r.raise_for_status()
            stored += len(memories)
        timings["store_s"] = round(time.monotonic() - started, 1)
        log(f"stored {stored} turns in {timings['store_s']} s")
        if evolution:
            started = time.monotonic()
            for client in clients:
                _wait_settled(client, timeout_s=1800)
            timings["evolution_s"] = round(time.monotonic() - started, 1)
            log(f"evolution settled in {timings['evolution_s']} s")

        for client, conversation in zip(clients, conversations, strict=True):
            for qa in conversation["qa"]:
                category = qa.get("category")
                wanted = evidence_ids(qa)
                if category not in CATEGORIES or not wanted:
                    continue
                t = time.perf_counter()
                r = client.post("/v1/memories/search", json={"query": qa["question"], "k": max(KS)})
                latencies.append(time.perf_counter() - t)
                r.raise_for_status()
                found = [h["memory"]["metadata"].get("dia_id") for h in r.json()["results"]]
                for k in KS:
                    recall = len(wanted & set(found[:k])) / len(wanted)
                    hits[k].append(recall)
                    by_category[CATEGORIES[category]][k].append(recall)
        for client in clients:
            client.close()
    finally:
        stack.stop()

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
    parser.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"no LoCoMo file at {args.data}: pass --data or LOCOMO=<path>", file=sys.stderr)
        return 2
    result = run(
        args.data.resolve(), evolution=not args.no_evolution, log=lambda m: print(m, flush=True)
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
