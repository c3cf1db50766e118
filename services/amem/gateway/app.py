"""The FastAPI application: `create_app(settings)`; `python -m amem.gateway` serves it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.transport_security import TransportSecuritySettings
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from amem.client import AsyncClient
from amem.core.errors import AmemError
from amem.core.quotas import Quotas, UsageStore
from amem.core.store import NoteStore
from amem.core.writer import NoteWriter
from amem.embedding.client import EmbeddingClient
from amem.evolution.client import EvolutionClient
from amem.gateway import errors
from amem.gateway.access import AccessRecorder
from amem.gateway.api.routes import admin, console, health, memories, usage
from amem.gateway.auth import KeyRing, KeyStore
from amem.gateway.evolution import EvolutionHook, NoEvolution, NotifyEvolution
from amem.gateway.lexical import LexicalIndex
from amem.gateway.limits import BodySizeLimit, CatchAll, bounded_head_protocol
from amem.gateway.ratelimit import RateLimiter
from amem.gateway.service import MemoryService
from amem.gateway.settings import GatewaySettings
from amem.mcp import create_mcp

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
        # Each resource's close is pushed as it is made: teardown runs in reverse (the access
        # counts flush before the store closes, pending notifies end before their client),
        # and one close that fails does not skip the others.
        async with AsyncExitStack() as closing:
            embedder = EmbeddingClient(
                settings.embedding_target, timeout_s=settings.embedding_timeout_s
            )
            closing.push_async_callback(embedder.close)
            # Vectors given to the store come from this client's model, and are checked against
            # the model each tenant's collection records (core/store/models.py).
            store = NoteStore(
                settings.chroma_host,
                settings.chroma_port,
                timeout_s=settings.chroma_timeout_s,
                model=lambda: embedder.model,
            )
            closing.push_async_callback(store.close)
            app.state.store = store
            app.state.embedder = embedder
            evolution_client = None
            if settings.evolution_target:
                evolution_client = EvolutionClient(
                    settings.evolution_target, edit_timeout_s=settings.edit_timeout_s
                )
                closing.push_async_callback(evolution_client.close)
            keyring.start()
            closing.push_async_callback(keyring.close)
            access = AccessRecorder(store, flush_s=settings.access_flush_s)
            access.start()
            closing.push_async_callback(access.close)
            lexical_store = NoteStore(
                settings.chroma_host, settings.chroma_port, timeout_s=settings.lexical_timeout_s
            )
            closing.push_async_callback(lexical_store.close)
            lexical = LexicalIndex(
                lexical_store,
                refresh_s=settings.lexical_refresh_s,
                margin_s=settings.lexical_margin_s,
                max_notes=settings.lexical_max_notes,
            )
            closing.push_async_callback(lexical.close)
            hook = evolution or (
                NotifyEvolution(evolution_client) if evolution_client else NoEvolution()
            )
            if isinstance(hook, NotifyEvolution):
                closing.push_async_callback(hook.close)
            app.state.service = MemoryService(
                store,
                embedder,
                hook,
                evolution_client,
                # Changes to stored notes go to the tenant's writer: the evolution owner, or
                # with no evolution service this gateway itself (core/writer.py).
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
            await closing.enter_async_context(mcp.session_manager.run())
            yield

    app = FastAPI(
        title="amem",
        summary="Long-term, self-organising memory for LLM agents (A-MEM as a service).",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keyring = keyring
    mcp = create_mcp(_in_process_clients(app, settings))
    app.router.routes.append(
        Route("/mcp", _Keyed(keyring, _mcp_app(mcp)), methods=["GET", "POST", "DELETE"])
    )
    app.state.rate_limiter = RateLimiter(settings.rate_limit)
    errors.install(app)
    app.include_router(memories.router)
    app.include_router(usage.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    console.install(app)
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


def _mcp_app(mcp: MCPServer) -> ASGIApp:
    """The MCP server's Streamable HTTP app, stateless and answering in JSON, so any replica
    serves any request. The host check against DNS rebinding is off: the endpoint is behind
    Bearer keys, and its host is the ingress's, which the app cannot know."""
    return mcp.streamable_http_app(
        streamable_http_path="/mcp",
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )


class _Keyed:
    """An ASGI app behind the REST API's Bearer keys: 401 without a valid one (the MCP layer
    never sees such a request). The calls the tools make carry the same key
    (_in_process_clients), so rate limits and quotas apply there, per call, as for REST. A
    class, not a function: Starlette's Route calls a function with a Request."""

    def __init__(self, keyring: KeyRing, app: ASGIApp) -> None:
        self._keyring = keyring
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The first Authorization header, as the tools' calls forward it (request.headers).
        auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        auth = auth.decode("latin-1")
        scheme, _, key = auth.partition(" ")
        try:
            await self._keyring.caller(key.strip() if scheme.lower() == "bearer" else None)
        except AmemError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
            response = errors.error_response(exc.http_status, exc.code, exc.message, headers)
            await response(scope, receive, send)
            return
        await self._app(scope, receive, send)


def _in_process_clients(app: FastAPI, settings: GatewaySettings):
    """An SDK client per tool call that calls this gateway's own REST API in-process (no
    network), with the caller's key and request id."""

    @asynccontextmanager
    async def clients(ctx: Context) -> AsyncIterator[AsyncClient]:
        request = ctx.request_context.request
        headers = {"Authorization": request.headers.get("authorization", "")}
        if request_id := correlation_id.get():
            headers["X-Request-ID"] = request_id
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://amem-gateway",
            headers=headers,
            timeout=settings.max_wait_s + 30,
        )
        async with AsyncClient(http_client=http, max_retries=0) as client:
            yield client

    return clients


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
