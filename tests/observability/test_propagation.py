"""W3C trace context over gRPC, seen by the SDK's in-memory span exporter: the real embedding
servicer (real model) on amem's real gRPC server set-up, called by the real client adapter,
all in this process, so one exporter sees both sides of the call."""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from amem.core import tracing
from amem.core.grpc_server import create_server, set_serving
from amem.embedding.client import EmbeddingClient
from amem.embedding.encoder import Encoder
from amem.embedding.server import SERVICE_NAME, EmbeddingServicer
from amem.embedding.settings import EmbeddingSettings
from amem.embedding.v1 import embedding_pb2_grpc

EMBED = "/amem.embedding.v1.EmbeddingService/Embed"


def test_a_grpc_call_continues_the_callers_trace_on_the_server() -> None:
    exporter = InMemorySpanExporter()
    # The global provider of this test process (no other test installs one).
    tracing.configure("test", processors=[SimpleSpanProcessor(exporter)])

    async def scenario() -> None:
        settings = EmbeddingSettings(listen="127.0.0.1:0")
        servicer = EmbeddingServicer(settings)
        server, port, health = await create_server(settings.listen, [SERVICE_NAME])
        embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
        await server.start()
        servicer.attach(await asyncio.to_thread(Encoder, settings))
        await set_serving(health, [SERVICE_NAME], True)
        client = EmbeddingClient(f"127.0.0.1:{port}", timeout_s=30)
        try:
            with trace.get_tracer("test").start_as_current_span("caller"):
                await client.embed(["a text to embed"])
            assert await client.is_serving()  # health checks are not traced
        finally:
            await client.close()
            await server.stop(0)
            await servicer.close()

    asyncio.run(scenario())
    spans = exporter.get_finished_spans()
    [caller] = [s for s in spans if s.name == "caller"]
    [client] = [s for s in spans if s.name == EMBED and s.kind is SpanKind.CLIENT]
    [served] = [s for s in spans if s.name == EMBED and s.kind is SpanKind.SERVER]
    assert client.context.trace_id == served.context.trace_id == caller.context.trace_id
    assert client.parent.span_id == caller.context.span_id
    assert served.parent.span_id == client.context.span_id
    assert served.status.is_ok
    assert not [s for s in spans if "Health" in s.name]
