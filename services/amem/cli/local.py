"""`amem run`: the whole system, locally, in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from amem.devstack import LocalStack, ProcessDied

    stack = LocalStack(
        data_dir=Path(os.environ.get("AMEM_DATA_DIR", "data")).resolve(),
        gateway_port=int(os.environ.get("AMEM_PORT", "8080")),
        dev_api_key=os.environ.get("AMEM_DEV_API_KEY", "amem-dev-key"),
        log_dir=None,  # children write to this terminal
    )

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then leaves it
    # ignored; `amem run` must stop on Ctrl-C however it was started.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"amem: starting ChromaDB, embedding, evolution and gateway (data in {stack.data_dir})")
    try:
        stack.start()
        key = stack.dev_api_key
        print(
            f"""
amem is serving the REST API on {stack.gateway_url}  (OpenAPI docs: {stack.gateway_url}/docs)
the console: {stack.gateway_url}/console  (sign in with the key below)
development API key: {key}
ChromaDB on port {stack.chroma_port}, the evolution service on {stack.evolution_target}
(`amem doctor --chroma-port {stack.chroma_port}`, `amem reindex --evolution-target ...`)

  curl -s -X POST {stack.gateway_url}/v1/memories -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{{"content": "The deploy key rotates every Monday"}}'
  curl -s -X POST {stack.gateway_url}/v1/memories/search -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{{"query": "when do keys rotate?", "k": 3}}'

Ctrl-C stops everything.""",
            flush=True,
        )
        while True:
            stack.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\namem: stopping", flush=True)
        return 0
    except (ProcessDied, TimeoutError) as exc:
        print(f"amem: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()
