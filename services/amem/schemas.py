"""The REST API's request and response models, split by purpose: what a caller sends
(Create/Update) and what the API returns (Public). Limits live in the field types so that
OpenAPI documents them. One source for both sides: the gateway declares its routes with
these, and the SDK (amem.client) sends and parses them, so the two cannot drift. Only
pydantic is needed to import this module."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
)

from amem.core.erasure import ErasureReceipt, ScrubbedMemory
from amem.core.model import (
    TENANT_PATTERN,
    EvolutionStatus,
    HistoryEntry,
    Instant,
    MetadataValue,
    Note,
    ScoredNote,
    SearchMode,
)

# The domain's own models, served as they are.
__all__ = ["ErasureReceipt", "HistoryEntry", "ScrubbedMemory", "SearchMode"]

MAX_CONTENT_CHARS = 16_000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Content = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_CONTENT_CHARS), AfterValidator(_not_blank)
]
Term = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Terms = Annotated[list[Term], Field(max_length=32)]
Context = Annotated[str, StringConstraints(max_length=2_000)]
Category = Annotated[str, StringConstraints(max_length=100)]
Principal = Annotated[str, StringConstraints(min_length=1, max_length=128)]
NoteId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# An id a caller gives a new memory: it goes into URL paths, so no "/", "?", "#" or "%", and
# no "." or ".." alone.
ChosenId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._:-]{0,63}$")]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_METADATA_CHARS = 1_024
# The JSON scalars of `MetadataValue`, each kept as the type it came as (true stays true, 1.0
# stays 1.0), with strings bounded like every other input. NaN and infinities are not JSON.
MetadataScalar = Annotated[
    Annotated[str, StringConstraints(max_length=MAX_METADATA_CHARS)]
    | StrictBool
    | StrictInt
    | Annotated[StrictFloat, Field(allow_inf_nan=False)]
    | None,
    Field(union_mode="left_to_right"),
]
Metadata = Annotated[dict[MetadataKey, MetadataScalar], Field(max_length=32)]


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


# Links are a set, kept in the order given: a repeated id is one link.
Links = Annotated[list[NoteId], Field(max_length=64), AfterValidator(_unique)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MemoryCreate(_Strict):
    """A new memory. Only `content` is required; the evolution service fills in keywords,
    context and tags that are left out."""

    content: Content
    id: ChosenId | None = Field(
        default=None,
        description="An id of your choosing (no memory of the tenant may have it: 409); "
        "default: a new UUID.",
    )
    keywords: Terms = []
    tags: Terms = []
    context: Context = ""
    category: Category = ""
    timestamp: Instant | None = Field(
        default=None,
        description="When the remembered thing happened (ISO 8601; without an offset it is "
        "UTC; stored and returned in UTC); defaults to now.",
    )
    user_id: Principal | None = None
    agent_id: Principal | None = None
    metadata: Metadata = {}
    links: Links = Field(default=[], description="Ids of existing memories of the same tenant.")
    follows: NoteId | None = Field(
        default=None,
        description="The existing memory this one follows in a conversation (the turn before "
        "it); construction reads it to write this memory's context.",
    )


class MemoryUpdate(_Strict):
    """Fields to change; fields left out stay as they are. `user_id`/`agent_id` may be null to
    clear them."""

    content: Content | None = None
    keywords: Terms | None = None
    tags: Terms | None = None
    context: Context | None = None
    category: Category | None = None
    timestamp: Instant | None = None
    user_id: Principal | None = None
    agent_id: Principal | None = None
    metadata: Metadata | None = None
    links: Links | None = None


class MemoryPublic(BaseModel):
    id: str
    content: str
    keywords: list[str]
    links: list[str]
    tags: list[str]
    context: str
    category: str
    timestamp: datetime
    last_accessed: datetime
    retrieval_count: int
    evolution_history: list[HistoryEntry]
    user_id: str | None
    agent_id: str | None
    metadata: dict[str, MetadataValue]
    follows: str | None
    status: EvolutionStatus
    status_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, note: Note) -> MemoryPublic:
        return cls.model_validate(note.model_dump())


class MemoryWritten(MemoryPublic):
    embedding_truncated: bool = Field(
        description="True when the embedded text exceeded the model's token limit and only its "
        "start was embedded (the whole content is still stored)."
    )


class MemoryBatchCreate(_Strict):
    memories: Annotated[list[MemoryCreate], Field(min_length=1)]
    conversation: StrictBool = Field(
        default=False,
        description="The memories are consecutive turns of one conversation: each one that "
        "names no `follows` follows the memory before it in the batch.",
    )


class MemoryBatchWritten(BaseModel):
    memories: list[MemoryWritten]


class MemoryPage(BaseModel):
    memories: list[MemoryPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class SearchFilters(_Strict):
    user_id: Principal | None = None
    agent_id: Principal | None = None
    tag: Term | None = None
    category: Category | None = None
    since: Instant | None = Field(default=None, description="timestamp >= since")
    until: Instant | None = Field(default=None, description="timestamp < until")


class SearchRequest(_Strict):
    query: Annotated[
        str, StringConstraints(min_length=1, max_length=4_000), AfterValidator(_not_blank)
    ]
    k: int = Field(default=10, ge=1)
    mode: SearchMode = Field(
        default=SearchMode.HYBRID,
        description="hybrid: dense and BM25 rankings fused (reciprocal rank fusion); dense: "
        "embedding similarity only; lexical: BM25 only.",
    )
    filters: SearchFilters = SearchFilters()
    include_links: StrictBool = Field(
        default=False,
        description="Also return the memories linked from the hits (as A-MEM's search_agentic) "
        "that meet the same filters, at most max_link_memories of them.",
    )


class SearchHit(BaseModel):
    memory: MemoryPublic
    score: float | None = Field(
        description="Rank score, higher is better: the fused reciprocal-rank score in hybrid and "
        "lexical mode, the cosine similarity in dense mode; null for linked memories."
    )
    similarity: float | None = Field(
        default=None,
        description="Cosine similarity to the query where the dense ranking found the memory.",
    )
    linked_from: str | None = Field(default=None, description="The hit this memory is linked from.")

    @classmethod
    def of(cls, hit: ScoredNote) -> SearchHit:
        return cls(
            memory=MemoryPublic.of(hit.note),
            score=hit.score,
            similarity=hit.similarity,
            linked_from=hit.linked_from,
        )


class SearchResponse(BaseModel):
    results: list[SearchHit]
    links_truncated: bool = Field(
        default=False,
        description="True when include_links found more linked memories than max_link_memories "
        "and only that many were returned.",
    )
    mode: SearchMode = Field(
        description="The rankings actually used: a hybrid search answers dense only while this "
        "gateway is still loading the tenant's BM25 index (seconds, after a start)."
    )


class LinkedMemory(BaseModel):
    memory: MemoryPublic
    depth: int


class LinksResponse(BaseModel):
    root: str
    memories: list[LinkedMemory]
    edges: list[tuple[str, str]] = Field(description="(from, to) pairs between returned memories.")
    backlinks: list[str] = Field(
        default=[],
        description="Memories that link to the root (at most max_link_memories of them).",
    )
    truncated: bool = Field(
        default=False,
        description="True when the neighbourhood holds more than max_link_memories memories: "
        "the nearest ones (breadth first) were returned.",
    )


class Usage(BaseModel):
    """What a tenant holds and has spent today, against its quotas (null: no limit)."""

    tenant: str | None = Field(default=None, description="The tenant of the key that asked.")
    notes: int
    notes_quota: int | None
    day: date = Field(description="The UTC day `llm_tokens` counts.")
    llm_tokens: int = Field(description="Prompt and completion tokens evolution spent today.")
    llm_tokens_per_day: int | None


class EraseResponse(BaseModel):
    deleted: int
    unlinked: int = Field(description="Other memories whose links to the erased ones were removed.")
    receipt: ErasureReceipt


class HistoryResponse(BaseModel):
    memory_id: str
    entries: list[HistoryEntry]


class ErrorBody(BaseModel):
    error: str
    message: str


# --- API keys (/v1/admin/keys) ---

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


class KeyIssued(KeyPublic):
    key: str = Field(description="The API key itself: shown once, stored only as a hash.")


class KeyList(BaseModel):
    keys: list[KeyPublic]
