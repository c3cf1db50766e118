"""/v1/usage: what the calling tenant holds and spends, against its quotas."""

from __future__ import annotations

from fastapi import APIRouter

from amem.gateway.api.deps import Service, Tenant
from amem.gateway.api.responses import TENANT_ERRORS
from amem.schemas import Usage

router = APIRouter(prefix="/v1/usage", tags=["usage"], responses=TENANT_ERRORS)


@router.get("", operation_id="get_usage")
async def get_usage(tenant: Tenant, service: Service) -> Usage:
    return Usage.model_validate(await service.usage(tenant), from_attributes=True)
