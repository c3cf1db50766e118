"""Logging set-up shared by every service: JSON lines in containers, plain text on a terminal.

Call `configure()` once at process start. Never log note content or API keys: log ids,
counts and durations.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure(service: str, *, level: str = "INFO", json_logs: bool | None = None) -> None:
    """Route the root logger to stderr; JSON unless stderr is a terminal (or forced)."""
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
                static_fields={"service": service},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s {service} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request access lines and HTTP client chatter are metrics' job, not the log's.
    for noisy in ("httpx", "httpx2", "httpcore", "uvicorn.access", "chromadb.telemetry"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
