"""What every amem gRPC client shares (the server side is core/grpc_server.py): a channel with
the service's retry policy, tracing, and one interceptor that turns a failed call into the
error taxonomy's class (`from_rpc_error`: the class the server raised, rebuilt from trailing
metadata), so no client method catches `AioRpcError` itself."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from amem.core import tracing
from amem.core.errors import from_rpc_error


class ErrorInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Raises the domain error a failed unary call stands for; `peer` names the service in
    messages ("embedding service is unavailable ...")."""

    def __init__(self, peer: str) -> None:
        self._peer = peer

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        call = await continuation(client_call_details, request)
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc, peer=self._peer) from exc
        return call


def channel(
    target: str,
    *,
    peer: str,
    service_config: dict[str, Any],
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """An insecure channel to `target` with `service_config` (gRPC's retry policy and load
    balancing) and retries on, tracing, and failed calls raised as domain errors. The error
    interceptor is the outer one, so the trace records the status the peer sent."""
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", json.dumps(service_config)),
            ("grpc.enable_retries", 1),
            *options,
        ],
        interceptors=[ErrorInterceptor(peer), *tracing.client_interceptors()],
    )
