"""The error responses (and headers) the OpenAPI document declares for each group of routes,
in one place: the routes name them, and the gateway's exception handlers (gateway/errors.py)
produce the bodies."""

from __future__ import annotations

from amem.schemas import ErrorBody

# Every route behind a tenant's API key.
TENANT_ERRORS = {
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    403: {"model": ErrorBody, "description": "The tenant's quota does not allow it"},
    413: {"model": ErrorBody, "description": "Request body or batch over the limit"},
    422: {"model": ErrorBody, "description": "Invalid request"},
    429: {"model": ErrorBody, "description": "Rate limit of this API key; retry after Retry-After"},
    503: {
        "model": ErrorBody,
        "description": "A dependency is unavailable; retry after Retry-After",
    },
}
# Every route of the admin API.
ADMIN_ERRORS = {
    401: {"model": ErrorBody, "description": "Missing admin key"},
    403: {"model": ErrorBody, "description": "Not an admin key, or the admin API is off"},
    413: {"model": ErrorBody, "description": "Request body over the limit"},
    422: {"model": ErrorBody, "description": "Invalid request"},
    503: {"model": ErrorBody, "description": "The key store is unavailable"},
}
MEMORY_NOT_FOUND = {404: {"model": ErrorBody, "description": "No such memory for this tenant"}}
KEY_NOT_FOUND = {404: {"model": ErrorBody, "description": "No such key"}}
PRECONDITION_FAILED = {
    412: {
        "model": ErrorBody,
        "description": "If-Match names no version the memory is at: it changed; read it again",
    }
}
ETAG_HEADER = {
    "ETag": {
        "description": 'The memory\'s version as a strong entity tag ("3"): pass it in If-Match',
        "schema": {"type": "string"},
    }
}
REPLAYED = {
    "Idempotent-Replayed": {
        "description": "true when this answers a repeat of an earlier request (see "
        "Idempotency-Key); nothing was written",
        "schema": {"type": "string"},
    }
}
