"""The embedding image as it starts and serves: time from `docker run` to SERVING, and the
server's resident memory after it has encoded a batch of texts (VmRSS and VmHWM of the
container's PID 1, the service).

    python -m amem.bench.containers IMAGE [IMAGE ...]

Each image runs with the settings the chart gives it on CPU (auto backend: ONNX), on a port
published on 127.0.0.1, and is removed afterwards. One JSON line per image.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time

from amem.embedding.client import EmbeddingClient

TEXTS = [f"Caroline went to the support group on day {i}, and wrote it down." for i in range(64)]


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], check=True, capture_output=True, text=True, timeout=300
    ).stdout


def _status(container: str) -> dict[str, int]:
    status = _docker("exec", container, "cat", "/proc/1/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) // 1024 for key in ("VmRSS", "VmHWM")}


async def _ready_and_used(port: str, started: float, timeout_s: float) -> float:
    """Seconds from `started` until the service is SERVING; then a few batches encoded."""
    client = EmbeddingClient(f"127.0.0.1:{port}", timeout_s=60)
    try:
        while not await client.is_serving(timeout_s=1):
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"not serving after {timeout_s} s")
            await asyncio.sleep(0.1)
        ready = time.monotonic() - started
        for _ in range(4):
            await client.embed(TEXTS)
        return ready
    finally:
        await client.close()


def measure(image: str, timeout_s: float = 300) -> dict:
    started = time.monotonic()
    container = _docker(
        "run", "-d", "--rm", "--read-only", "--tmpfs", "/tmp", "-p", "127.0.0.1::50051", image
    ).strip()
    try:
        port = _docker("port", container, "50051").split(":")[-1].strip()
        ready = asyncio.run(_ready_and_used(port, started, timeout_s))
        memory = _status(container)
        size = int(_docker("image", "inspect", "-f", "{{.Size}}", image))
        return {
            "image": image,
            "size_mb": round(size / 1e6),
            "time_to_ready_s": round(ready, 1),
            "rss_mib": memory["VmRSS"],
            "peak_rss_mib": memory["VmHWM"],
        }
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()
    for image in args.images:
        print(json.dumps(measure(image)), flush=True)


if __name__ == "__main__":
    main()
