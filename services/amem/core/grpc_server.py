"""What every amem gRPC server shares: error mapping, RPC metrics, tracing, health, reflection
and a graceful stop on SIGTERM/SIGINT.

Handlers raise `AmemError`s; the interceptor here turns them into status codes (with the
error's own code in trailing metadata, see core/errors.py), so no handler calls
`context.set_code` itself.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram

from amem.core import tracing
from amem.core.errors import AmemError, trailing_metadata

log = logging.getLogger(__name__)

RPC_REQUESTS = Counter(
    "amem_grpc_server_requests_total",
    "gRPC requests handled, by method and status code.",
    ["method", "code"],
)
RPC_SECONDS = Histogram(
    "amem_grpc_server_handling_seconds",
    "Time to handle a gRPC request, by method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class ErrorAndMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to status codes and records per-RPC counts and latency."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming RPCs (health Watch, reflection) pass through untouched
        inner = handler.unary_unary
        method = handler_call_details.method

        async def wrapped(request, context: grpc.aio.ServicerContext):
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await inner(request, context)
            except AmemError as exc:
                code = exc.grpc_code
                await context.abort(exc.grpc_code, exc.message, trailing_metadata(exc))
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                if context.code() not in (None, grpc.StatusCode.OK):
                    code = context.code()  # an abort() from the handler itself
                    raise
                code = grpc.StatusCode.INTERNAL
                log.exception("unhandled error in %s", method)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")
            finally:
                RPC_REQUESTS.labels(method, code.name).inc()
                RPC_SECONDS.labels(method).observe(time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


# Let clients keep long-lived connections but cycle them now and then, so replicas added by
# an autoscaler receive traffic from clients that connected before they existed.
SERVER_OPTIONS = [
    ("grpc.max_connection_age_ms", 5 * 60 * 1000),
    ("grpc.max_connection_age_grace_ms", 30 * 1000),
    ("grpc.keepalive_time_ms", 60 * 1000),
]


async def create_server(
    addr: str, service_names: Iterable[str]
) -> tuple[grpc.aio.Server, int, health.aio.HealthServicer]:
    """A server bound to `addr` (port 0 picks a free port) with health and reflection.

    Health starts NOT_SERVING for every service; the caller flips it once it is ready.
    Returns the server, the bound port and the health servicer.
    """
    # The tracing interceptor comes first, so its span covers the status the other one sets.
    server = grpc.aio.server(
        interceptors=[tracing.server_interceptor(), ErrorAndMetricsInterceptor()],
        options=SERVER_OPTIONS,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    await set_serving(health_servicer, names, False)
    reflection.enable_server_reflection(
        [*names, reflection.SERVICE_NAME, health.SERVICE_NAME], server
    )
    port = server.add_insecure_port(addr)
    if port == 0:
        raise RuntimeError(f"could not bind gRPC server to {addr}")
    return server, port, health_servicer


async def set_serving(
    health_servicer: health.aio.HealthServicer, names: Iterable[str], serving: bool
) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        await health_servicer.set(name, status)


async def wait_for_stop_signal() -> None:
    """Returns on the first SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
