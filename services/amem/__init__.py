"""amem: long-term, self-organising memory for LLM agents (A-MEM as a service).

The package root is the SDK: `from amem import Client, AsyncClient` (amem.client), and the
errors it raises (amem.core.errors). It needs httpx and pydantic only; the services are in
the extras (`pip install 'amem[server]'`).
"""

from amem.client import AsyncClient, Client
from amem.core.errors import (
    AmemError,
    Conflict,
    HeadersTooLarge,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    RateLimited,
    RequestTimeout,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AmemError",
    "AsyncClient",
    "Client",
    "Conflict",
    "HeadersTooLarge",
    "InvalidArgument",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PreconditionFailed",
    "QuotaExceeded",
    "RateLimited",
    "RequestTimeout",
    "Unauthenticated",
    "Unavailable",
]
