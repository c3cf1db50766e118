"""/v1/memories: CRUD, listing, search, links and erasure."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from amem.core.errors import InvalidArgument, PayloadTooLarge
from amem.core.model import EvolutionStatus, Instant, NoteDraft, NoteFilter
from amem.gateway.api.deps import Service, Settings, Tenant
from amem.gateway.api.http import (
    IdempotencyKey,
    IfMatch,
    allowed_versions,
    decode_cursor,
    encode_cursor,
    idempotency_of,
    mark_replayed,
    set_etag,
)
from amem.gateway.api.responses import (
    ETAG_HEADER,
    MEMORY_NOT_FOUND,
    PRECONDITION_FAILED,
    REPLAYED,
    TENANT_ERRORS,
)
from amem.schemas import (
    EraseResponse,
    ErasureReceipt,
    ErrorBody,
    HistoryResponse,
    LinkedMemory,
    LinksResponse,
    MemoryBatchCreate,
    MemoryBatchWritten,
    MemoryCreate,
    MemoryPage,
    MemoryPublic,
    MemoryUpdate,
    MemoryWritten,
    SearchHit,
    SearchRequest,
    SearchResponse,
)

router = APIRouter(prefix="/v1/memories", tags=["memories"], responses=TENANT_ERRORS)


def _written(note, truncated: bool) -> MemoryWritten:
    return MemoryWritten(**MemoryPublic.of(note).model_dump(), embedding_truncated=truncated)


Wait = Annotated[
    bool,
    Query(description="Answer once the evolution is done (or failed), as A-MEM does inline."),
]
WaitTimeout = Annotated[
    float,
    Query(
        alias="timeout",
        gt=0,
        description="Seconds to wait at most (capped by max_wait_s); the memory is "
        "returned still `pending` when they run out.",
    ),
]


_EXISTS = {409: {"model": ErrorBody, "description": "A memory with the id given exists"}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_memory",
    responses={201: {"headers": {**ETAG_HEADER, **REPLAYED}}, **_EXISTS},
)
async def create_memory(
    body: MemoryCreate,
    tenant: Tenant,
    service: Service,
    settings: Settings,
    response: Response,
    wait: Wait = False,
    wait_timeout: WaitTimeout = 30.0,
    idempotency_key: IdempotencyKey = None,
) -> MemoryWritten:
    """Store a memory. It is durable when this returns; the LLM work (construction, linking,
    evolution) follows asynchronously while its status is `pending`."""
    keyed = idempotency_of(idempotency_key, "/v1/memories", body)
    [(note, truncated)], replayed = await service.create(tenant, [_draft(body)], idempotency=keyed)
    mark_replayed(response, replayed)
    if wait:
        [note] = await service.wait_settled(tenant, [note], min(wait_timeout, settings.max_wait_s))
    set_etag(response, note)
    return _written(note, truncated)


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    operation_id="create_memories",
    responses={
        201: {"headers": REPLAYED},
        **_EXISTS,
        413: {"model": ErrorBody, "description": "Too many memories in one batch"},
    },
)
async def create_memories(
    body: MemoryBatchCreate,
    tenant: Tenant,
    service: Service,
    settings: Settings,
    response: Response,
    wait: Wait = False,
    wait_timeout: WaitTimeout = 30.0,
    idempotency_key: IdempotencyKey = None,
) -> MemoryBatchWritten:
    """Store several memories at once: all of them or, on error, none."""
    if len(body.memories) > settings.max_batch:
        raise PayloadTooLarge(
            f"batch holds {len(body.memories)} memories; the limit is {settings.max_batch}"
        )
    keyed = idempotency_of(idempotency_key, "/v1/memories/batch", body)
    written, replayed = await service.create(
        tenant,
        [_draft(m) for m in body.memories],
        conversation=body.conversation,
        idempotency=keyed,
    )
    mark_replayed(response, replayed)
    notes = [n for n, _ in written]
    if wait:
        notes = await service.wait_settled(tenant, notes, min(wait_timeout, settings.max_wait_s))
    return MemoryBatchWritten(
        memories=[_written(n, t) for n, (_, t) in zip(notes, written, strict=True)]
    )


def _draft(body: MemoryCreate) -> NoteDraft:
    return NoteDraft.model_validate(body.model_dump(exclude_none=True))


@router.get("", operation_id="list_memories")
async def list_memories(
    tenant: Tenant,
    service: Service,
    settings: Settings,
    user_id: str | None = None,
    agent_id: str | None = None,
    tag: str | None = None,
    category: str | None = None,
    status_: Annotated[EvolutionStatus | None, Query(alias="status")] = None,
    since: Annotated[Instant | None, Query(description="timestamp >= since (ISO 8601)")] = None,
    until: Annotated[Instant | None, Query(description="timestamp < until (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, description="Page size (at most max_page_size)")] = 50,
    cursor: str | None = None,
) -> MemoryPage:
    """List memories in insertion order, one page at a time."""
    if limit > settings.max_page_size:
        raise InvalidArgument(f"limit {limit} exceeds max_page_size {settings.max_page_size}")
    flt = NoteFilter(
        user_id=user_id,
        agent_id=agent_id,
        tag=tag,
        category=category,
        status=status_,
        since=since,
        until=until,
    )
    offset = decode_cursor(cursor, flt) if cursor else 0
    notes, more = await service.list(tenant, flt, limit=limit, offset=offset)
    return MemoryPage(
        memories=[MemoryPublic.of(n) for n in notes],
        next_cursor=encode_cursor(offset + len(notes), flt) if more else None,
    )


@router.delete("", operation_id="erase_memories")
async def erase_memories(
    tenant: Tenant,
    service: Service,
    user_id: str | None = None,
    agent_id: str | None = None,
) -> EraseResponse:
    """Erase every memory of a user (and/or agent). Refuses to run without a scope."""
    if user_id is None and agent_id is None:
        raise InvalidArgument("give user_id and/or agent_id: erasing a whole tenant is refused")
    receipt = await service.erase(tenant, NoteFilter(user_id=user_id, agent_id=agent_id))
    return EraseResponse(
        deleted=len(receipt.erased), unlinked=len(receipt.unlinked), receipt=receipt
    )


@router.post("/search", operation_id="search_memories")
async def search_memories(
    body: SearchRequest,
    tenant: Tenant,
    service: Service,
    settings: Settings,
) -> SearchResponse:
    """The k memories that best match the query, best first: by default the fusion of meaning
    (embedding similarity) and words (BM25)."""
    if body.k > settings.max_k:
        raise InvalidArgument(f"k {body.k} exceeds max_k {settings.max_k}")
    hits, used, links_truncated = await service.search(
        tenant,
        body.query,
        k=body.k,
        flt=NoteFilter(**body.filters.model_dump()),
        include_links=body.include_links,
        mode=body.mode,
        max_linked=settings.max_link_memories,
    )
    return SearchResponse(
        results=[SearchHit.of(h) for h in hits], mode=used, links_truncated=links_truncated
    )


@router.get(
    "/{memory_id}",
    operation_id="get_memory",
    responses={**MEMORY_NOT_FOUND, 200: {"headers": ETAG_HEADER}},
)
async def get_memory(
    memory_id: str, tenant: Tenant, service: Service, response: Response
) -> MemoryPublic:
    note = await service.get(tenant, memory_id)
    set_etag(response, note)
    return MemoryPublic.of(note)


@router.patch(
    "/{memory_id}",
    operation_id="update_memory",
    responses={**MEMORY_NOT_FOUND, **PRECONDITION_FAILED, 200: {"headers": ETAG_HEADER}},
)
async def update_memory(
    memory_id: str,
    body: MemoryUpdate,
    tenant: Tenant,
    service: Service,
    response: Response,
    if_match: IfMatch = None,
) -> MemoryWritten:
    """Change some fields of a memory; it is re-embedded when its embedded text changes. A new
    `content` also clears what evolution derived from the old one (keywords, context and tags
    it wrote, links it added, and what it wrote into neighbours) and queues the memory for
    evolution again; fields given in the same change are kept. With If-Match, only if the
    memory is still at that version (else 412)."""
    changes = body.model_dump(mode="json", exclude_unset=True)
    note, truncated = await service.update(
        tenant, memory_id, changes, if_match=allowed_versions(if_match)
    )
    set_etag(response, note)
    return _written(note, truncated)


@router.delete(
    "/{memory_id}",
    operation_id="delete_memory",
    responses={**MEMORY_NOT_FOUND, **PRECONDITION_FAILED},
)
async def delete_memory(
    memory_id: str, tenant: Tenant, service: Service, if_match: IfMatch = None
) -> ErasureReceipt:
    """Delete a memory, remove it from other memories' links (and `follows`), and undo what its
    evolution wrote into other memories; the receipt lists every memory changed. With
    If-Match, only if the memory is still at that version (else 412)."""
    return await service.delete(tenant, memory_id, if_match=allowed_versions(if_match))


@router.get("/{memory_id}/links", operation_id="get_memory_links", responses=MEMORY_NOT_FOUND)
async def get_memory_links(
    memory_id: str,
    tenant: Tenant,
    service: Service,
    settings: Settings,
    depth: Annotated[int, Query(ge=1, description="Hops to follow (at most max_link_depth)")] = 1,
) -> LinksResponse:
    """The memory's neighbourhood in the link graph, to a given depth, breadth first and at
    most max_link_memories memories (`truncated` says when there were more)."""
    if depth > settings.max_link_depth:
        raise InvalidArgument(f"depth {depth} exceeds max_link_depth {settings.max_link_depth}")
    found, edges, truncated = await service.neighbourhood(
        tenant, memory_id, depth, limit=settings.max_link_memories
    )
    return LinksResponse(
        root=memory_id,
        memories=[LinkedMemory(memory=MemoryPublic.of(n), depth=d) for n, d in found],
        edges=edges,
        truncated=truncated,
        backlinks=await service.backlinks(tenant, memory_id, limit=settings.max_link_memories),
    )


@router.post(
    "/{memory_id}:evolve",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="evolve_memory",
    responses={**MEMORY_NOT_FOUND, 409: {"model": ErrorBody, "description": "Already evolved"}},
)
async def evolve_memory(memory_id: str, tenant: Tenant, service: Service) -> MemoryPublic:
    """Queue a `failed` (or still `pending`) memory for evolution again."""
    return MemoryPublic.of(await service.retry_evolution(tenant, memory_id))


@router.get("/{memory_id}/history", operation_id="get_memory_history", responses=MEMORY_NOT_FOUND)
async def get_memory_history(memory_id: str, tenant: Tenant, service: Service) -> HistoryResponse:
    """Every change evolution made to this memory, oldest first, with provenance."""
    note = await service.get(tenant, memory_id)
    return HistoryResponse(memory_id=note.id, entries=note.evolution_history)


@router.post(
    "/{memory_id}/history/{entry_id}:revert",
    operation_id="revert_memory_history_entry",
    responses={
        **MEMORY_NOT_FOUND,
        409: {"model": ErrorBody, "description": "Changed since, or already reverted"},
    },
)
async def revert_history_entry(
    memory_id: str, entry_id: str, tenant: Tenant, service: Service, settings: Settings
) -> MemoryPublic:
    """Undo one evolution step: the fields it changed get their earlier values back, and the
    revert is recorded as a history entry of its own."""
    return MemoryPublic.of(
        await service.revert(tenant, memory_id, entry_id, timeout_s=settings.max_wait_s)
    )
