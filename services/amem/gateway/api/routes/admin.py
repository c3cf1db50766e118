"""/v1/admin/keys: create, list, rotate and revoke tenants' API keys (admin key required)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field, StringConstraints

from amem.core.model import TENANT_PATTERN
from amem.gateway.api.deps import Admin
from amem.gateway.auth import ManagedKey
from amem.gateway.schemas import ErrorBody, _Strict

_ERRORS = {
    401: {"model": ErrorBody, "description": "Missing admin key"},
    403: {"model": ErrorBody, "description": "Not an admin key, or the admin API is off"},
    413: {"model": ErrorBody, "description": "Request body over the limit"},
    422: {"model": ErrorBody, "description": "Invalid request"},
    503: {"model": ErrorBody, "description": "The key store is unavailable"},
}
_NOT_FOUND = {404: {"model": ErrorBody, "description": "No such key"}}

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], responses=_ERRORS)

TenantId = Annotated[str, StringConstraints(pattern=TENANT_PATTERN)]
KeyName = Annotated[str, StringConstraints(max_length=100)]
MAX_SECONDS = 10 * 365 * 24 * 3600


class KeyCreate(_Strict):
    tenant: TenantId
    name: KeyName = ""
    expires_in_s: int | None = Field(
        default=None, ge=60, le=MAX_SECONDS, description="Lifetime; none: until revoked."
    )


class KeyRotate(_Strict):
    grace_s: int = Field(
        default=3600,
        ge=0,
        le=30 * 24 * 3600,
        description="How long the old key keeps working, so clients can switch over.",
    )


class KeyPublic(BaseModel):
    id: str
    tenant: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ManagedKey) -> KeyPublic:
        return cls(
            id=key.id,
            tenant=key.tenant,
            name=key.name,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


class KeyIssued(KeyPublic):
    key: str = Field(description="The API key itself: shown once, stored only as a hash.")


class KeyList(BaseModel):
    keys: list[KeyPublic]


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_key")
async def create_key(body: KeyCreate, keyring: Admin) -> KeyIssued:
    expires = timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    record, secret = await keyring.create(body.tenant, body.name, expires_in=expires)
    return KeyIssued(**KeyPublic.of(record).model_dump(), key=secret)


@router.get("", operation_id="list_keys")
async def list_keys(
    keyring: Admin,
    tenant: Annotated[TenantId | None, Query()] = None,
    include_revoked: bool = False,
) -> KeyList:
    await keyring.refresh()
    keys = keyring.list(tenant, include_revoked=include_revoked)
    return KeyList(keys=[KeyPublic.of(k) for k in keys])


@router.post(
    "/{key_id}:rotate",
    status_code=status.HTTP_201_CREATED,
    operation_id="rotate_key",
    responses=_NOT_FOUND,
)
async def rotate_key(key_id: str, keyring: Admin, body: KeyRotate | None = None) -> KeyIssued:
    grace = timedelta(seconds=(body or KeyRotate()).grace_s)
    record, secret = await keyring.rotate(key_id, grace)
    return KeyIssued(**KeyPublic.of(record).model_dump(), key=secret)


@router.delete("/{key_id}", operation_id="revoke_key", responses=_NOT_FOUND)
async def revoke_key(key_id: str, keyring: Admin) -> KeyPublic:
    return KeyPublic.of(await keyring.revoke(key_id))
