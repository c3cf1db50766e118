"""One error taxonomy for every service.

Each error knows its public code, its HTTP status and its gRPC status code, so the mapping
lives here and nowhere else: the gateway's exception handler reads `http_status`, the gRPC
server interceptor reads `grpc_code`, and the gRPC client adapters turn a failed call back
into the same class with `from_rpc_error`: the server sends the error's code (and any
retry-after) as trailing metadata, so classes that share a status code (RESOURCE_EXHAUSTED:
payload too large, quota exceeded, rate limited) come back as themselves; a peer that sends
none is mapped by status code alone (`from_grpc_code`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # grpc is a service dependency: the SDK raises these classes without it
    import grpc


class AmemError(Exception):
    code = "internal"
    http_status = 500
    grpc_status = "INTERNAL"  # the name of its grpc.StatusCode

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    @property
    def grpc_code(self) -> grpc.StatusCode:
        import grpc

        return grpc.StatusCode[self.grpc_status]


class InvalidArgument(AmemError):
    code = "invalid_argument"
    http_status = 422
    grpc_status = "INVALID_ARGUMENT"


class PayloadTooLarge(AmemError):
    code = "payload_too_large"
    http_status = 413
    grpc_status = "RESOURCE_EXHAUSTED"


class Unauthenticated(AmemError):
    code = "unauthenticated"
    http_status = 401
    grpc_status = "UNAUTHENTICATED"


class PermissionDenied(AmemError):
    code = "permission_denied"
    http_status = 403
    grpc_status = "PERMISSION_DENIED"


class QuotaExceeded(AmemError):
    """The tenant's quota does not allow this; waiting will not help."""

    code = "quota_exceeded"
    http_status = 403
    grpc_status = "RESOURCE_EXHAUSTED"


class RateLimited(AmemError):
    """Too many requests for this key; retry after `retry_after` seconds."""

    code = "rate_limited"
    http_status = 429
    grpc_status = "RESOURCE_EXHAUSTED"


class NotFound(AmemError):
    code = "not_found"
    http_status = 404
    grpc_status = "NOT_FOUND"


class Conflict(AmemError):
    code = "conflict"
    http_status = 409
    grpc_status = "ABORTED"


class PreconditionFailed(AmemError):
    """The caller's condition (If-Match: the memory's version) does not hold."""

    code = "precondition_failed"
    http_status = 412
    grpc_status = "FAILED_PRECONDITION"


class Unavailable(AmemError):
    """A dependency is down or too slow; the caller should retry after `retry_after` seconds."""

    code = "unavailable"
    http_status = 503
    grpc_status = "UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: float | None = 1.0) -> None:
        super().__init__(message, retry_after=retry_after)


class RequestTimeout(AmemError):
    """The request's body stalled (HTTP only: the gateway's body guard)."""

    code = "request_timeout"
    http_status = 408
    grpc_status = "DEADLINE_EXCEEDED"


class HeadersTooLarge(AmemError):
    """The request line and headers are over the gateway's limit (HTTP only)."""

    code = "headers_too_large"
    http_status = 431
    grpc_status = "RESOURCE_EXHAUSTED"


class Internal(AmemError):
    pass


def by_code(code: str) -> type[AmemError] | None:
    """The taxonomy's class for a public error code (`"not_found"`), if any."""
    return {cls.code: cls for cls in reversed(_all_errors())}.get(code)


_BY_GRPC_STATUS: dict[str, type[AmemError]] = {
    "INVALID_ARGUMENT": InvalidArgument,
    "OUT_OF_RANGE": InvalidArgument,
    "RESOURCE_EXHAUSTED": PayloadTooLarge,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": PermissionDenied,
    "NOT_FOUND": NotFound,
    "ABORTED": Conflict,
    "ALREADY_EXISTS": Conflict,
    "FAILED_PRECONDITION": PreconditionFailed,
    # A dead or overloaded peer and a missed deadline look the same to our callers: retry later.
    "UNAVAILABLE": Unavailable,
    "DEADLINE_EXCEEDED": Unavailable,
    "CANCELLED": Unavailable,
    # An older peer without the method (during a rolling upgrade): retry on a newer one.
    "UNIMPLEMENTED": Unavailable,
}


def from_grpc_code(code: grpc.StatusCode, details: str | None, *, peer: str) -> AmemError:
    """The domain error for a failed RPC to `peer` (a service name used in the message)."""
    cls = _BY_GRPC_STATUS.get(code.name, Internal)
    if cls is Unavailable:
        return Unavailable(f"{peer} is unavailable ({code.name.lower()}): {details or ''}".rstrip())
    return cls(details or f"{peer} failed with {code.name}")


# Trailing metadata that carries an AmemError across a gRPC call.
CODE_KEY = "amem-error-code"
RETRY_AFTER_KEY = "amem-retry-after"


def _all_errors(cls: type[AmemError] = AmemError) -> list[type[AmemError]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _all_errors(direct))]


def trailing_metadata(exc: AmemError) -> tuple[tuple[str, str], ...]:
    """What a server sends with a failed call so that the client can rebuild `exc`."""
    pairs = [(CODE_KEY, exc.code)]
    if exc.retry_after is not None:
        pairs.append((RETRY_AFTER_KEY, f"{exc.retry_after:g}"))
    return tuple(pairs)


def from_rpc_error(exc: grpc.aio.AioRpcError, *, peer: str) -> AmemError:
    """The domain error a failed call to `peer` stands for: the very class the server raised
    when it said which (trailing metadata), else by status code."""
    sent = dict(exc.trailing_metadata() or ())
    cls = by_code(sent.get(CODE_KEY, ""))
    if cls is None or cls is Internal or cls is AmemError:
        return from_grpc_code(exc.code(), exc.details(), peer=peer)
    retry_after = float(sent[RETRY_AFTER_KEY]) if RETRY_AFTER_KEY in sent else None
    if cls is Unavailable:
        return Unavailable(exc.details() or f"{peer} is unavailable", retry_after=retry_after)
    return cls(exc.details() or f"{peer} failed", retry_after=retry_after)
