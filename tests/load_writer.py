"""A steady write load, in a process of its own: `python -m tests.load_writer URL KEY OUT`
posts one memory at a time until SIGTERM, appending one JSON line per attempt to OUT with the
outcome (`status`, or `error` for a transport failure), the latency and, for a 201, the id
and content."""

from __future__ import annotations

import json
import signal
import sys
import time
import uuid

import httpx


def main(url: str, key: str, out_path: str) -> None:
    running = True

    def stop(*_: object) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    run = uuid.uuid4().hex[:8]
    with (
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c,
        open(out_path, "a") as out,
    ):
        i = 0
        while running:
            content = f"load note {i} of run {run}: {uuid.uuid4().hex}"
            started = time.monotonic()
            record: dict = {"i": i}
            try:
                r = c.post("/v1/memories", json={"content": content, "user_id": f"load-{run}"})
                record["status"] = r.status_code
                if r.status_code == 201:
                    record |= {"id": r.json()["id"], "content": content}
                else:
                    record |= {"body": r.text[:300], "retry_after": r.headers.get("retry-after")}
                    time.sleep(0.05)
            except httpx.TransportError as exc:
                record["error"] = type(exc).__name__
                time.sleep(0.05)
            record["seconds"] = round(time.monotonic() - started, 3)
            out.write(json.dumps(record) + "\n")
            out.flush()
            i += 1


if __name__ == "__main__":
    main(*sys.argv[1:4])
