"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz", responses={503: {"description": "Not ready"}})
async def readyz(request: Request) -> JSONResponse:
    """The dependencies (ChromaDB, embedding service) answer."""
    state = request.app.state

    async def chroma() -> bool:
        try:
            await asyncio.wait_for(state.store.heartbeat(), 2.0)
        except Exception:
            return False
        return True

    chroma_ok, embedding_ok = await asyncio.gather(chroma(), state.embedder.is_serving(2.0))
    checks = {"chromadb": chroma_ok, "embedding": embedding_ok}
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": "1"},
    )
