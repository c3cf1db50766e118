"""Logging set-up shared by every service: JSON lines in containers, plain text on a terminal.

Call `configure()` once at process start. Never log note content or API keys: log ids,
counts and durations. A JSON line logged inside a trace carries `trace_id` and `span_id`, and
one logged while the gateway serves a request carries that request's `request_id` (the
`X-Request-ID` the client sent, if a UUID, else a fresh one, echoed in the response).
"""

from __future__ import annotations

import logging
import sys

from asgi_correlation_id import CorrelationIdFilter
from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter


class _TraceFilter(logging.Filter):
    """Adds the current span's ids to a record logged inside a trace."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


def configure(service: str, *, level: str = "INFO", json_logs: bool | None = None) -> None:
    """Route the root logger to stderr; JSON unless stderr is a terminal (or forced)."""
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={
                    "levelname": "level",
                    "asctime": "time",
                    "correlation_id": "request_id",
                },
                static_fields={"service": service},
                # Uvicorn attaches an ANSI-coloured copy of its message for its own formatter.
                reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)-7s {service} %(name)s: %(message)s")
        )
    handler.addFilter(_TraceFilter())
    handler.addFilter(CorrelationIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request access lines and HTTP client chatter are metrics' job, not the log's.
    for noisy in ("httpx", "httpx2", "httpcore", "uvicorn.access", "chromadb.telemetry"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
