"""The FastAPI application: `create_app(settings)`; `python -m amem.gateway` serves it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_fastapi_instrumentator import Instrumentator

from amem.core.embedding_client import EmbeddingClient
from amem.core.evolution_client import EvolutionClient
from amem.core.quotas import Quotas, UsageStore
from amem.core.store import NoteStore
from amem.core.writer import NoteWriter
from amem.gateway import errors
from amem.gateway.access import AccessRecorder
from amem.gateway.api.routes import admin, health, memories, usage
from amem.gateway.auth import KeyRing, KeyStore
from amem.gateway.evolution import EvolutionHook, NoEvolution, NotifyEvolution
from amem.gateway.lexical import LexicalIndex
from amem.gateway.limits import BodySizeLimit, CatchAll, bounded_head_protocol
from amem.gateway.ratelimit import RateLimiter
from amem.gateway.service import MemoryService
from amem.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def create_app(settings: GatewaySettings, evolution: EvolutionHook | None = None) -> FastAPI:
    # Fails fast on a bad key configuration.
    keyring = KeyRing(
        settings.all_api_keys(),
        admin_keys=settings.all_admin_keys(),
        store=KeyStore(
            settings.chroma_host, settings.chroma_port, timeout_s=settings.chroma_timeout_s
        ),
        refresh_s=settings.keys_refresh_s,
    )
    if not len(keyring) and not keyring.admin_enabled:
        log.warning("no API keys configured and no admin key to create any: every request gets 401")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = NoteStore(
            settings.chroma_host, settings.chroma_port, timeout_s=settings.chroma_timeout_s
        )
        embedder = EmbeddingClient(
            settings.embedding_target, timeout_s=settings.embedding_timeout_s
        )
        app.state.store = store
        app.state.embedder = embedder
        evolution_client = (
            EvolutionClient(settings.evolution_target, edit_timeout_s=settings.edit_timeout_s)
            if settings.evolution_target
            else None
        )
        hook = evolution or (
            NotifyEvolution(evolution_client) if evolution_client else NoEvolution()
        )
        keyring.start()
        access = AccessRecorder(store, flush_s=settings.access_flush_s)
        access.start()
        lexical_store = NoteStore(
            settings.chroma_host, settings.chroma_port, timeout_s=settings.lexical_timeout_s
        )
        lexical = LexicalIndex(
            lexical_store,
            refresh_s=settings.lexical_refresh_s,
            margin_s=settings.lexical_margin_s,
            max_notes=settings.lexical_max_notes,
        )
        app.state.service = MemoryService(
            store,
            embedder,
            hook,
            evolution_client,
            # Changes to stored notes go to the tenant's writer: the evolution owner, or with
            # no evolution service this gateway itself (core/writer.py).
            editor=evolution_client or NoteWriter(store, embedder),
            lexical=lexical,
            access=access,
            rrf_k=settings.rrf_k,
            candidates=settings.search_candidates,
            quotas=Quotas.parse(settings.quotas),
            usage=UsageStore(
                settings.chroma_host, settings.chroma_port, timeout_s=settings.chroma_timeout_s
            ),
        )
        try:
            yield
        finally:
            await keyring.close()
            await access.close()
            if isinstance(hook, NotifyEvolution):
                await hook.close()
            await lexical.close()
            await lexical_store.close()
            if evolution_client:
                await evolution_client.close()
            await embedder.close()
            await store.close()

    app = FastAPI(
        title="amem",
        summary="Long-term, self-organising memory for LLM agents (A-MEM as a service).",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keyring = keyring
    app.state.rate_limiter = RateLimiter(settings.rate_limit)
    errors.install(app)
    app.include_router(memories.router)
    app.include_router(usage.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    Instrumentator(
        should_group_status_codes=False,
        excluded_handlers=["/metrics", "/healthz", "/readyz"],
    ).instrument(app, metric_namespace="amem", metric_subsystem="gateway").expose(
        app, include_in_schema=False
    )
    app.add_middleware(CatchAll)  # innermost of ours: tracing and request ids see its 500
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    _document_limits(app, settings)
    return app


def _document_limits(app: FastAPI, settings: GatewaySettings) -> None:
    """Put the configured maxima (k, page size, link depth, batch size) into the OpenAPI
    schema: they are settings, so the route signatures cannot carry them."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        paths = schema["paths"]
        for path, name, maximum in (
            ("/v1/memories", "limit", settings.max_page_size),
            ("/v1/memories/{memory_id}/links", "depth", settings.max_link_depth),
        ):
            for param in paths[path]["get"]["parameters"]:
                if param["name"] == name:
                    param["schema"]["maximum"] = maximum
        models = schema["components"]["schemas"]
        models["SearchRequest"]["properties"]["k"]["maximum"] = settings.max_k
        models["MemoryBatchCreate"]["properties"]["memories"]["maxItems"] = settings.max_batch
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def main() -> None:
    import uvicorn

    from amem.core import logs, tracing

    settings = GatewaySettings()
    logs.configure("gateway", level=settings.log_level, json_logs=settings.json_logs)
    tracing.configure("gateway")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=bounded_head_protocol(settings.max_header_bytes),
        log_config=None,
        timeout_graceful_shutdown=10,
    )
