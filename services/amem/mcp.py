"""amem's memory as MCP tools (the official `mcp` SDK, 2.x).

The tools are written once, over the SDK's `AsyncClient`, and served two ways:

- by the gateway at `/mcp` (Streamable HTTP, stateless, JSON responses, so any replica answers
  any request): behind the same Bearer keys as REST, checked before the MCP layer sees the
  request (401 without a valid key). Each tool call is a REST call made in-process through the
  gateway's own ASGI app with the caller's key, so the tenant comes from the key (never from a
  tool argument) and rate limits, quotas, metrics, traces and request ids apply as for REST.
- by `amem mcp` over stdio (for clients that launch a command), proxying to a gateway at
  AMEM_URL with AMEM_API_KEY.

A failed call is a tool error whose structured content is `{"error": {"code", "message",
"retry_after"}}`, the code being the REST API's (not_found, invalid_argument, rate_limited...).
"""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from amem.client import AsyncClient
from amem.core.errors import AmemError
from amem.schemas import (
    Category,
    Content,
    ErasureReceipt,
    HistoryResponse,
    LinksResponse,
    MemoryPage,
    MemoryPublic,
    MemoryWritten,
    Metadata,
    NoteId,
    Principal,
    SearchResponse,
    Term,
    Terms,
)
from amem.schemas import Context as ContextText

# How a tool gets the client for the call it serves (per request in the gateway).
Clients = Callable[[Context], AbstractAsyncContextManager[AsyncClient]]

INSTRUCTIONS = """amem is a long-term memory that organises itself (A-MEM): each memory gets
keywords, a context and tags, is linked to related memories, and its neighbours evolve as
knowledge accumulates. Store what is worth remembering with add_memory; find it again with
search_memory (hybrid meaning + words by default). Use user_id (and agent_id) to keep
different people's memories apart in filters."""

MemoryId = Annotated[str, Field(min_length=1, max_length=64, description="A memory's id.")]
Instant = Annotated[
    str, Field(max_length=40, description="ISO 8601 date-time, e.g. 2026-12-03T09:30:00Z.")
]
IfVersion = Annotated[
    int | None,
    Field(ge=1, description="Only if the memory is still at this version (its `version`)."),
]
_READ = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
_WRITE = ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False)


def _ok(result: BaseModel) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=result.model_dump_json())],
        structured_content=result.model_dump(mode="json"),
    )


def _failed(exc: AmemError) -> CallToolResult:
    error = {"code": exc.code, "message": exc.message, "retry_after": exc.retry_after}
    return CallToolResult(
        content=[TextContent(type="text", text=f"{exc.code}: {exc.message}")],
        structured_content={"error": error},
        is_error=True,
    )


def create_mcp(clients: Clients) -> MCPServer:
    """The MCP server with amem's tools; `clients` yields the client for a call."""
    server = MCPServer("amem", instructions=INSTRUCTIONS, version="1")

    async def call(ctx: Context, work: Callable[[AsyncClient], Any]) -> CallToolResult:
        try:
            async with clients(ctx) as client:
                return _ok(await work(client))
        except AmemError as exc:
            return _failed(exc)

    @server.tool(annotations=_WRITE)
    async def add_memory(
        ctx: Context,
        content: Content,
        user_id: Principal | None = None,
        agent_id: Principal | None = None,
        tags: Terms | None = None,
        keywords: Terms | None = None,
        context: ContextText | None = None,
        category: Category | None = None,
        timestamp: Instant | None = None,
        metadata: Metadata | None = None,
        links: Annotated[list[NoteId], Field(max_length=64)] | None = None,
        wait: Annotated[
            bool,
            Field(description="Answer once the memory is evolved (keywords, links...)."),
        ] = False,
    ) -> Annotated[CallToolResult, MemoryWritten]:
        """Store a memory. amem fills in the keywords, context and tags you leave out, links it
        to related memories and lets it update them; with wait=true the answer shows that."""
        fields = {
            "user_id": user_id,
            "agent_id": agent_id,
            "tags": tags,
            "keywords": keywords,
            "context": context,
            "category": category,
            "timestamp": timestamp,
            "metadata": metadata,
            "links": links,
        }
        return await call(ctx, lambda c: c.add(content, **fields, wait=wait))

    @server.tool(annotations=_READ)
    async def search_memory(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, max_length=4000)],
        k: Annotated[int, Field(ge=1, le=100)] = 10,
        mode: Literal["hybrid", "dense", "lexical"] = "hybrid",
        user_id: Principal | None = None,
        agent_id: Principal | None = None,
        tag: Term | None = None,
        category: Category | None = None,
        since: Instant | None = None,
        until: Instant | None = None,
        include_links: bool = False,
    ) -> Annotated[CallToolResult, SearchResponse]:
        """The memories that best match a query, best first: hybrid (meaning and words fused)
        by default. include_links adds the memories linked from the hits."""
        return await call(
            ctx,
            lambda c: c.search(
                query,
                k=k,
                mode=mode,
                user_id=user_id,
                agent_id=agent_id,
                tag=tag,
                category=category,
                since=since,
                until=until,
                include_links=include_links,
            ),
        )

    @server.tool(annotations=_READ)
    async def get_memory(
        ctx: Context, memory_id: MemoryId
    ) -> Annotated[CallToolResult, MemoryPublic]:
        """One memory with every field (keywords, context, tags, links, status, version...)."""
        return await call(ctx, lambda c: c.get(memory_id))

    @server.tool(annotations=_WRITE)
    async def update_memory(
        ctx: Context,
        memory_id: MemoryId,
        content: Content | None = None,
        tags: Terms | None = None,
        keywords: Terms | None = None,
        context: ContextText | None = None,
        category: Category | None = None,
        metadata: Metadata | None = None,
        links: Annotated[list[NoteId], Field(max_length=64)] | None = None,
        if_version: IfVersion = None,
    ) -> Annotated[CallToolResult, MemoryWritten]:
        """Change some fields of a memory. A new content clears what evolution derived from the
        old one and evolves the memory again."""
        given = {
            "content": content,
            "tags": tags,
            "keywords": keywords,
            "context": context,
            "category": category,
            "metadata": metadata,
            "links": links,
        }
        fields = {k: v for k, v in given.items() if v is not None}
        return await call(ctx, lambda c: c.update(memory_id, if_version=if_version, **fields))

    @server.tool(annotations=ToolAnnotations(destructiveHint=True, openWorldHint=False))
    async def delete_memory(
        ctx: Context, memory_id: MemoryId, if_version: IfVersion = None
    ) -> Annotated[CallToolResult, ErasureReceipt]:
        """Delete a memory, remove links to it, and undo what its evolution wrote into other
        memories; returns the receipt of everything changed."""
        return await call(ctx, lambda c: c.delete(memory_id, if_version=if_version))

    @server.tool(annotations=_READ)
    async def list_memories(
        ctx: Context,
        user_id: Principal | None = None,
        agent_id: Principal | None = None,
        tag: Term | None = None,
        category: Category | None = None,
        status: Literal["pending", "done", "failed"] | None = None,
        since: Instant | None = None,
        until: Instant | None = None,
        limit: Annotated[int, Field(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Field(max_length=512)] = None,
    ) -> Annotated[CallToolResult, MemoryPage]:
        """Memories in the order they were stored, a page at a time: pass next_cursor back as
        cursor for the next page (null at the end)."""
        return await call(
            ctx,
            lambda c: c.page(
                user_id=user_id,
                agent_id=agent_id,
                tag=tag,
                category=category,
                status=status,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            ),
        )

    @server.tool(annotations=_READ)
    async def get_links(
        ctx: Context, memory_id: MemoryId, depth: Annotated[int, Field(ge=1, le=3)] = 1
    ) -> Annotated[CallToolResult, LinksResponse]:
        """A memory's neighbourhood in the link graph, up to `depth` hops."""
        return await call(ctx, lambda c: c.links(memory_id, depth=depth))

    @server.tool(annotations=_READ)
    async def get_history(
        ctx: Context, memory_id: MemoryId
    ) -> Annotated[CallToolResult, HistoryResponse]:
        """Every change evolution made to a memory, oldest first, with what caused it."""
        return await call(ctx, lambda c: c.history(memory_id))

    @server.tool(annotations=_WRITE)
    async def revert_history_entry(
        ctx: Context,
        memory_id: MemoryId,
        entry_id: Annotated[str, Field(min_length=1, max_length=64)],
    ) -> Annotated[CallToolResult, MemoryPublic]:
        """Undo one evolution step of a memory (an entry of its history)."""
        return await call(ctx, lambda c: c.revert(memory_id, entry_id))

    return server


def fixed_client(make: Callable[[], AsyncClient]) -> Clients:
    """Clients for `amem mcp`: one configured client for every call."""

    @asynccontextmanager
    async def clients(ctx: Context) -> AsyncIterator[AsyncClient]:
        async with make() as client:
            yield client

    return clients
