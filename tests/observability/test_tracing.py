"""Traces and logs, read from real processes: a stack of its own whose services export their
spans by OTLP (configured only through the standard OTEL_* variables) to an in-memory
collector double, and write JSON logs to files."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amem.devstack import LocalStack
from tests.conftest import KEY_A, KEY_B, client_for
from tests.otlp_collector import InMemoryCollector, Span


@pytest.fixture(scope="module")
def collector() -> Iterator[InMemoryCollector]:
    c = InMemoryCollector()
    yield c
    c.close()


@pytest.fixture(scope="module")
def traced(collector: InMemoryCollector, tmp_path_factory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("traced")
    s = LocalStack.for_tenants(
        root,
        {"tenant-a": KEY_A, "tenant-b": KEY_B},
        env={
            "AMEM_LOG_LEVEL": "DEBUG",
            "AMEM_EVOLUTION_LOG_LEVEL": "DEBUG",
            "AMEM_EVOLUTION_SCAN_INTERVAL_S": "1",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


def _traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def _in(spans: list[Span], trace_id: str, service: str, name: str) -> list[Span]:
    return [s for s in spans if s.trace_id == trace_id and s.service == service and s.name == name]


EMBED = "/amem.embedding.v1.EmbeddingService/Embed"
NOTIFY = "/amem.evolution.v1.EvolutionService/Notify"


def test_a_write_is_one_trace_through_gateway_embedding_chromadb_and_evolution(
    traced: LocalStack, collector: InMemoryCollector
) -> None:
    trace_id, parent = _traceparent()
    with client_for(traced, KEY_A) as api:
        r = api.post(
            "/v1/memories",
            json={"content": "Tracing test: the rollout of the billing service slipped a week."},
            headers={"traceparent": parent},
        )
    assert r.status_code == 201, r.text

    def complete(spans: list[Span]) -> bool:
        notify = _in(spans, trace_id, "amem-evolution", NOTIFY)
        return (
            bool(_in(spans, trace_id, "amem-embedding", EMBED))
            and bool(_in(spans, trace_id, "amem-gateway", "chromadb upsert"))
            and bool(notify)
            and any(
                s.name == "evolution.evolve" and (trace_id, notify[0].span_id) in s.links
                for s in spans
            )
        )

    spans = collector.wait_for(complete)
    # The embedding service's server span is the child of the gateway's client span.
    client_calls = {s.span_id for s in _in(spans, trace_id, "amem-gateway", EMBED)}
    assert {s.parent_id for s in _in(spans, trace_id, "amem-embedding", EMBED)} <= client_calls
    # The request's server span is the root of everything the gateway did for it.
    request = [s for s in spans if s.trace_id == trace_id and s.name == "POST /v1/memories"]
    assert request, "no server span for the request"

    # The evolution ran later, in a trace of its own linked to the request's, and that trace
    # too crossed into the embedding service and ChromaDB.
    evolve = next(s for s in spans if s.name == "evolution.evolve" and trace_id in dict(s.links))
    assert evolve.trace_id != trace_id
    assert evolve.attributes["amem.note_id"] == r.json()["id"]
    spans = collector.wait_for(
        lambda got: (
            bool(_in(got, evolve.trace_id, "amem-embedding", EMBED))
            and bool(_in(got, evolve.trace_id, "amem-evolution", "chromadb update"))
        )
    )
    assert _in(spans, evolve.trace_id, "amem-evolution", "chromadb get")


def test_a_search_traces_the_embedding_and_the_vector_query(
    traced: LocalStack, collector: InMemoryCollector
) -> None:
    trace_id, parent = _traceparent()
    with client_for(traced, KEY_A) as api:
        r = api.post(
            "/v1/memories/search",
            json={"query": "when does billing ship?", "mode": "dense"},
            headers={"traceparent": parent},
        )
    assert r.status_code == 200, r.text
    spans = collector.wait_for(
        lambda got: (
            bool(_in(got, trace_id, "amem-embedding", EMBED))
            and bool(_in(got, trace_id, "amem-gateway", "chromadb query"))
        )
    )
    query = _in(spans, trace_id, "amem-gateway", "chromadb query")[0]
    assert query.attributes["db.system"] == "chromadb"
    # The same calls are timed in the gateway's metrics, by operation and outcome.
    metrics = httpx.get(f"{traced.gateway_url}/metrics").text
    assert 'amem_chromadb_request_seconds_count{op="query",outcome="ok"}' in metrics
    assert 'amem_circuit_breaker_open{dependency="chromadb"} 0.0' in metrics


def _json_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return lines


def test_logs_are_json_with_request_and_trace_ids_and_never_content_or_keys(
    traced: LocalStack, collector: InMemoryCollector
) -> None:
    secret_text = f"private-{uuid.uuid4().hex} diary entry about the dentist"
    request_id = str(uuid.uuid4())
    trace_id, parent = _traceparent()
    with client_for(traced, KEY_B) as api:
        assert api.post("/v1/memories", json={"content": secret_text}).status_code == 201
        # The first search of a tenant loads its BM25 index in a task that logs when done.
        r = api.post(
            "/v1/memories/search",
            json={"query": secret_text},
            headers={"X-Request-ID": request_id, "traceparent": parent},
        )
        assert r.status_code == 200, r.text
        assert r.headers["X-Request-ID"] == request_id
        # A request id that is not a UUID is replaced, not echoed into logs.
        r = api.get("/v1/memories", headers={"X-Request-ID": "forged-id level=ERROR"})
        assert uuid.UUID(r.headers["X-Request-ID"])

    log = traced.log_dir / "gateway.log"

    def loaded() -> list[dict]:
        return [
            line
            for line in _json_lines(log)
            if line.get("message") == "lexical index loaded" and line.get("tenant") == "tenant-b"
        ]

    deadline = time.monotonic() + 30
    while not loaded() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert loaded(), "the gateway never logged the index load"
    line = loaded()[0]
    assert line["request_id"] == request_id
    assert line["trace_id"] == trace_id
    assert line["service"] == "gateway" and line["level"] == "INFO"
    # Uvicorn's own lines are JSON too, without the ANSI-coloured copy it attaches to some.
    uvicorn_lines = [x for x in _json_lines(log) if x.get("name", "").startswith("uvicorn")]
    assert any("Uvicorn running on" in x["message"] for x in uvicorn_lines)
    assert not [x for x in uvicorn_lines if "color_message" in x]

    # Evolution's own lines carry the trace id of the evolution they belong to.
    evolution_lines = _json_lines(traced.log_dir / "evolution.log")
    assert any(len(line.get("trace_id", "")) == 32 for line in evolution_lines)

    for name in ("gateway", "embedding", "evolution"):
        text = (traced.log_dir / f"{name}.log").read_text()
        assert secret_text.split()[0] not in text, f"note content in the {name} log"
        assert KEY_B not in text and KEY_A not in text, f"an API key in the {name} log"


def test_health_checks_are_not_traced(traced: LocalStack, collector: InMemoryCollector) -> None:
    httpx.get(f"{traced.gateway_url}/readyz", timeout=5)
    spans = collector.wait_for(lambda got: bool(got))
    assert not [s for s in spans if "grpc.health" in s.name or s.name.startswith("GET /readyz")]
