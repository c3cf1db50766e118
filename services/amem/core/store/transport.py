"""The ChromaDB transport: one client factory, and every call bounded in time, traced,
timed (`amem_chromadb_request_seconds`) and its failures translated into the error taxonomy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import chromadb
import httpx
from chromadb.api import AsyncClientAPI
from chromadb.config import Settings
from chromadb.errors import ChromaError, NotFoundError
from prometheus_client import Histogram

from amem.core import tracing
from amem.core.breaker import Breaker
from amem.core.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

CHROMA_SECONDS = Histogram(
    "amem_chromadb_request_seconds",
    "ChromaDB call latency, by operation and outcome (ok, timeout, unreachable, http_<code>, "
    "circuit_open, error).",
    ["op", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


async def connect(host: str, port: int) -> AsyncClientAPI:
    """A client of the ChromaDB server at `host`:`port` (HTTP API, no telemetry)."""
    return await chromadb.AsyncHttpClient(
        host=host, port=port, settings=Settings(anonymized_telemetry=False)
    )


class CollectionGone(Unavailable):
    """A tenant's collection vanished behind this process's back (dropped, or ChromaDB came
    back empty and a restore recreated it): the cached handle is stale."""


def translate(exc: Exception, timeout_s: float | None) -> tuple[str, Exception] | None:
    """The outcome label and the domain error for a failed Chroma call (None: not Chroma's)."""
    if isinstance(exc, TimeoutError):
        return "timeout", Unavailable(f"chromadb did not answer within {timeout_s}s")
    if isinstance(exc, httpx.TransportError | ConnectionError):
        return "unreachable", Unavailable(f"chromadb is unreachable: {type(exc).__name__}")
    if isinstance(exc, NotFoundError) and "collection" in exc.message().lower():
        return "http_404", CollectionGone(f"chromadb lost a collection: {exc.message()}")
    if isinstance(exc, ChromaError):
        if exc.code() >= 500:
            return f"http_{exc.code()}", Unavailable(f"chromadb failed: {exc.message()}")
        # Input the API let through and ChromaDB refused: a gap in our validation, logged with
        # ChromaDB's words, which the caller does not need to read.
        log.warning("chromadb refused a request: %s", exc.message())
        return f"http_{exc.code()}", InvalidArgument("the store refused the request")
    return None


@asynccontextmanager
async def chroma_call(
    op: str, timeout_s: float | None, breaker: Breaker | None
) -> AsyncIterator[None]:
    """Bound a Chroma call in time, trace and time it, and turn the client's failures into
    domain errors; `breaker` (if any) refuses the call while ChromaDB keeps failing."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        with (
            breaker.guard() if breaker else contextlib.nullcontext(),
            tracing.span(f"chromadb {op}", **{"db.system": "chromadb", "db.operation": op}),
        ):
            try:
                async with asyncio.timeout(timeout_s):
                    yield
            except Exception as exc:
                # Translated inside the breaker, so that what it counts is the domain error.
                translated = translate(exc, timeout_s)
                if translated is None:
                    raise
                outcome, error = translated
                raise error from exc
    except Unavailable as exc:
        if exc.__cause__ is None:
            outcome = "circuit_open"  # refused by the breaker without a call
        raise
    except BaseException:
        if outcome == "ok":
            outcome = "error"
        raise
    finally:
        CHROMA_SECONDS.labels(op, outcome).observe(time.perf_counter() - started)
