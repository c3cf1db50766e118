"""One error taxonomy for every service.

Each error knows its public code, its HTTP status and its gRPC status code, so the mapping
lives here and nowhere else: the gateway's exception handler reads `http_status`, the gRPC
server interceptor reads `grpc_code`, and the gRPC client adapters turn a status code back
into the same class with `from_grpc_code`.
"""

from __future__ import annotations

import grpc


class AmemError(Exception):
    code = "internal"
    http_status = 500
    grpc_code = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message


class InvalidArgument(AmemError):
    code = "invalid_argument"
    http_status = 422
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class PayloadTooLarge(AmemError):
    code = "payload_too_large"
    http_status = 413
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unauthenticated(AmemError):
    code = "unauthenticated"
    http_status = 401
    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(AmemError):
    code = "permission_denied"
    http_status = 403
    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class QuotaExceeded(AmemError):
    """The tenant's quota does not allow this; waiting will not help."""

    code = "quota_exceeded"
    http_status = 403
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RateLimited(AmemError):
    """Too many requests for this key; retry after `retry_after` seconds."""

    code = "rate_limited"
    http_status = 429
    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotFound(AmemError):
    code = "not_found"
    http_status = 404
    grpc_code = grpc.StatusCode.NOT_FOUND


class Conflict(AmemError):
    code = "conflict"
    http_status = 409
    grpc_code = grpc.StatusCode.ABORTED


class Unavailable(AmemError):
    """A dependency is down or too slow; the caller should retry after `retry_after` seconds."""

    code = "unavailable"
    http_status = 503
    grpc_code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)


class Internal(AmemError):
    pass


_BY_GRPC_CODE: dict[grpc.StatusCode, type[AmemError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.RESOURCE_EXHAUSTED: PayloadTooLarge,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    # A dead or overloaded peer and a missed deadline look the same to our callers: retry later.
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.CANCELLED: Unavailable,
}


def from_grpc_code(code: grpc.StatusCode, details: str | None, *, peer: str) -> AmemError:
    """The domain error for a failed RPC to `peer` (a service name used in the message)."""
    cls = _BY_GRPC_CODE.get(code, Internal)
    if cls is Unavailable:
        return Unavailable(f"{peer} is unavailable ({code.name.lower()}): {details or ''}".rstrip())
    return cls(details or f"{peer} failed with {code.name}")
