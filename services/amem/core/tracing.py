"""OpenTelemetry tracing, configured by the standard OTEL_* environment variables.

Call `configure(service)` once at process start. What it reads:

- `OTEL_TRACES_EXPORTER`: `otlp`, `console` or `none` (comma-separated for several). Unset, it
  is `otlp` when an OTLP endpoint variable is set and `none` otherwise; with no exporter, no
  SDK tracer is installed at all, so a process with no collector pays next to nothing.
- `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`: `http/protobuf` (the default, port 4318) or `grpc`
  (port 4317); the exporters themselves read the endpoint, headers, timeout and TLS variables.
- `OTEL_SERVICE_NAME` (default `amem-<service>`), `OTEL_RESOURCE_ATTRIBUTES`,
  `OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*` and `OTEL_SDK_DISABLED`, all read by the SDK.

gRPC calls carry W3C trace context both ways through the interceptors below; the gateway's
FastAPI app is instrumented in `amem.gateway.app`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
    filters,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)

log = logging.getLogger(__name__)

_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# Health checks and reflection run every few seconds and would drown the traces that matter.
_RPC_FILTER = filters.negate(
    filters.any_of(filters.health_check(), filters.service_prefix("grpc.reflection."))
)

tracer = trace.get_tracer("amem")


def _exporter(name: str) -> SpanExporter | None:
    if name == "none":
        return None
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: unsupported exporter {name!r}")
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    elif protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {protocol!r}")
    return OTLPSpanExporter()


def configure(service: str, *, processors: list[SpanProcessor] | None = None) -> None:
    """Install the global tracer provider for `service`; `processors` add to the exporters."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    default = "otlp" if any(os.environ.get(v) for v in _ENDPOINT_VARS) else "none"
    names = os.environ.get("OTEL_TRACES_EXPORTER") or default
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or f"amem-{service}"}
    )
    exporters = [_exporter(n.strip().lower()) for n in names.split(",") if n.strip()]
    exporters = [e for e in exporters if e is not None]
    if not exporters and not processors:
        # Nothing would leave the process: keep the API's no-op tracer, so that spans cost
        # next to nothing. Trace context from callers is still passed on.
        return
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
        log.info("exporting traces with %s", type(exporter).__name__)
    for processor in processors or ():
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that give each outgoing RPC a client span and send its trace context."""
    return aio_client_interceptors(filter_=_RPC_FILTER)


def server_interceptor() -> grpc.aio.ServerInterceptor:
    """An interceptor that continues the caller's trace in a server span per RPC."""
    return aio_server_interceptor(filter_=_RPC_FILTER)


@contextmanager
def span(name: str, **attributes: str | int | float | bool) -> Iterator[trace.Span]:
    """A child span of the current one; exceptions are recorded on it and re-raised."""
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current
