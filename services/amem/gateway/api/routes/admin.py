"""/v1/admin/keys: create, list, rotate and revoke tenants' API keys (admin key required)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, status

from amem.core.store import ManagedKey
from amem.gateway.api.deps import Admin
from amem.gateway.api.responses import ADMIN_ERRORS, KEY_NOT_FOUND
from amem.schemas import KeyCreate, KeyIssued, KeyList, KeyPublic, KeyRotate, TenantId

router = APIRouter(prefix="/v1/admin/keys", tags=["admin"], responses=ADMIN_ERRORS)


def _public(key: ManagedKey) -> KeyPublic:
    return KeyPublic(
        id=key.id,
        tenant=key.tenant,
        name=key.name,
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, operation_id="create_key")
async def create_key(body: KeyCreate, keyring: Admin) -> KeyIssued:
    expires = timedelta(seconds=body.expires_in_s) if body.expires_in_s else None
    record, secret = await keyring.create(body.tenant, body.name, expires_in=expires)
    return KeyIssued(**_public(record).model_dump(), key=secret)


@router.get("", operation_id="list_keys")
async def list_keys(
    keyring: Admin,
    tenant: Annotated[TenantId | None, Query()] = None,
    include_revoked: bool = False,
) -> KeyList:
    await keyring.refresh()
    keys = keyring.list(tenant, include_revoked=include_revoked)
    return KeyList(keys=[_public(k) for k in keys])


@router.post(
    "/{key_id}:rotate",
    status_code=status.HTTP_201_CREATED,
    operation_id="rotate_key",
    responses=KEY_NOT_FOUND,
)
async def rotate_key(key_id: str, keyring: Admin, body: KeyRotate | None = None) -> KeyIssued:
    grace = timedelta(seconds=(body or KeyRotate()).grace_s)
    record, secret = await keyring.rotate(key_id, grace)
    return KeyIssued(**_public(record).model_dump(), key=secret)


@router.delete("/{key_id}", operation_id="revoke_key", responses=KEY_NOT_FOUND)
async def revoke_key(key_id: str, keyring: Admin) -> KeyPublic:
    return _public(await keyring.revoke(key_id))
