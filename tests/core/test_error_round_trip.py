"""Every domain error crosses a gRPC call as itself: the server's interceptor sends its code (and
retry-after) as trailing metadata, and the clients' channel (core/grpc_client.py) raises the
same class. Several
classes share a status code (RESOURCE_EXHAUSTED: payload too large, quota exceeded, rate
limited), so the code alone used to turn a quota or a rate limit into "payload too large"."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from amem.core import errors, grpc_client
from amem.core.grpc_server import create_server

# The taxonomy's public classes (a module may subclass one privately, as the store does).
_CLASSES = [
    cls
    for cls in errors._all_errors()
    if cls.__module__ == errors.__name__ and cls not in (errors.AmemError, errors.Internal)
]


def test_every_error_class_is_covered():
    assert {c.code for c in _CLASSES} >= {
        "invalid_argument",
        "payload_too_large",
        "unauthenticated",
        "permission_denied",
        "quota_exceeded",
        "rate_limited",
        "not_found",
        "conflict",
        "precondition_failed",
        "unavailable",
    }


async def _round_trip(raised: errors.AmemError) -> errors.AmemError:
    async def handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise raised

    server, port, _ = await create_server("127.0.0.1:0", [])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Raiser", {"Raise": grpc.unary_unary_rpc_method_handler(handler)}
            )
        ]
    )
    await server.start()
    try:
        # The clients' own channel: its interceptor raises the domain error.
        target = f"127.0.0.1:{port}"
        async with grpc_client.channel(target, peer="test service", service_config={}) as channel:
            call = channel.unary_unary("/test.Raiser/Raise")
            with pytest.raises(errors.AmemError) as failed:
                await call(b"", timeout=5)
        assert isinstance(failed.value.__cause__, grpc.aio.AioRpcError)
        return failed.value
    finally:
        await server.stop(None)


@pytest.mark.parametrize("cls", _CLASSES, ids=lambda c: c.__name__)
def test_an_error_comes_back_as_its_own_class_with_its_retry_after(cls):
    sent = cls("the reason, in words", retry_after=7.5)
    got = asyncio.run(_round_trip(sent))
    assert type(got) is cls
    assert got.message == "the reason, in words"
    assert got.retry_after == 7.5
    assert (got.http_status, got.grpc_code) == (sent.http_status, sent.grpc_code)


def test_a_peer_that_sends_no_code_is_mapped_by_status():
    got = asyncio.run(_round_trip(errors.Internal("boom")))
    assert type(got) is errors.Internal
