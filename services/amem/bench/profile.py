"""Profile the gateway's search and write paths with py-spy (`make profile`).

Starts a local stack without evolution, bulk-loads --notes notes into one tenant, then records
the gateway with `py-spy record` while one client searches (hybrid), and again while one client
writes. Prints the functions with the most samples (inclusive) for each; the raw collapsed
stacks and speedscope files go to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from amem.bench.perf import DEFAULT_DATA, SEARCH_TENANT, corpus, grow
from amem.core.store import NoteStore
from amem.devstack import LocalStack


def top_frames(collapsed: Path, n: int = 25) -> list[tuple[str, float]]:
    """Functions by the share of samples they appear in (inclusive), from py-spy's raw output."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        k = int(samples)
        total += k
        for frame in set(stack.split(";")):
            counts[frame] += k
    return [(frame, round(100 * c / total, 1)) for frame, c in counts.most_common(n)]


def record(pid: int, seconds: int, out: Path, load) -> list[tuple[str, float]]:
    stop = threading.Event()
    worker = threading.Thread(target=load, args=(stop,))
    worker.start()
    time.sleep(1)
    subprocess.run(
        [
            Path(sys.executable).parent / "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        check=True,
        capture_output=True,
    )
    stop.set()
    worker.join()
    return top_frames(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("bench-results/profile"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    texts, queries = corpus(DEFAULT_DATA)
    from amem.embedding.encoder import Encoder
    from amem.embedding.settings import EmbeddingSettings

    base = Encoder(EmbeddingSettings()).encode(texts, batch_size=64).vectors
    workdir = Path(tempfile.mkdtemp(prefix="amem-profile-"))
    key = f"{SEARCH_TENANT}-key"
    stack = LocalStack.for_tenants(workdir, {SEARCH_TENANT: key}, evolution=False)
    stack.start()
    try:
        store = NoteStore("127.0.0.1", stack.chroma_port, timeout_s=120)
        asyncio.run(grow(store, base, texts, 0, args.notes, np.random.default_rng(0)))
        client = httpx.Client(
            base_url=stack.gateway_url, headers={"Authorization": f"Bearer {key}"}
        )
        while client.post("/v1/memories/search", json={"query": "x"}).json()["mode"] != "hybrid":
            time.sleep(0.5)

        def searches(stop):
            i = 0
            while not stop.is_set():
                client.post("/v1/memories/search", json={"query": queries[i % len(queries)]})
                i += 1

        def writes(stop):
            i = 0
            while not stop.is_set():
                client.post("/v1/memories", json={"content": texts[i % len(texts)]})
                i += 1

        pid = stack.processes["gateway"].popen.pid
        for name, load in (("search", searches), ("write", writes)):
            frames = record(pid, args.seconds, args.out / f"gateway-{name}.txt", load)
            print(f"\n== gateway, {name} path: share of samples per function (inclusive)")
            for frame, share in frames:
                print(f"{share:5.1f}%  {frame}")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
