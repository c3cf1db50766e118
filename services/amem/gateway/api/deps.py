"""Dependency aliases, so handler signatures read like documentation."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from amem.gateway.auth import KeyRing
from amem.gateway.service import MemoryService
from amem.gateway.settings import GatewaySettings

_bearer = HTTPBearer(auto_error=False, description="An amem API key.")


def _settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


def _service(request: Request) -> MemoryService:
    return request.app.state.service


async def _tenant(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    keyring: KeyRing = request.app.state.keyring
    caller = await keyring.caller(credentials.credentials if credentials else None)
    await request.app.state.rate_limiter.check(caller.key_id)
    return caller.tenant


def _admin(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> KeyRing:
    keyring: KeyRing = request.app.state.keyring
    keyring.check_admin(credentials.credentials if credentials else None)
    return keyring


Settings = Annotated[GatewaySettings, Depends(_settings)]
Service = Annotated[MemoryService, Depends(_service)]
Tenant = Annotated[str, Depends(_tenant)]
# The key ring, for a caller holding an admin key.
Admin = Annotated[KeyRing, Depends(_admin)]
