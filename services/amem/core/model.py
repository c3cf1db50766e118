"""The domain model: an A-MEM note and the filters that select notes.

Field names follow A-MEM's `MemoryNote` (id, content, keywords, links, tags, context, category,
timestamp, last_accessed, retrieval_count, evolution_history) so that users of the library find
what they know, plus what a multi-user service needs (user_id, agent_id, free-form metadata,
evolution status, version).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

# Free-form metadata values: JSON scalars. Nested structures would not survive the filters a
# later issue adds on metadata keys, so they are refused at the API boundary.
MetadataValue = str | int | float | bool | None

# A tenant id: it names a ChromaDB collection (`amem-<tenant>`), whose rules want the name to
# end in a letter or digit ("rt-" and "rt_" passed an earlier pattern and then every request
# of that tenant was refused by ChromaDB).
TENANT_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?$"
_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def _iso_only(value: Any) -> Any:
    """Refuse numbers (and numeric strings), which pydantic would read as Unix times: `until=0.5`
    is a typo, not 1970."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.match(value)):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-12-03T09:30:00Z")
    return value


def utc_instant(value: datetime) -> datetime:
    """`value` in UTC (a naive time is taken as UTC); ValueError when the instant has no UTC
    date-time, as 0001-01-01T00:00:00+01:00 (the last hour of year 0) has not."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "is outside the supported range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"
        ) from None


# A point in time, as the API takes and stores it: ISO 8601 only, normalised to UTC.
Instant = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(utc_instant)]


class EvolutionStatus(StrEnum):
    """Where a note stands with the LLM work (construction, linking, evolution)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_note_id() -> str:
    return str(uuid.uuid4())


HistoryKind = Literal["evolve", "update_neighbor", "revert", "erasure", "edit"]
# Entries whose `after` values the machine wrote (the others restore earlier values).
DERIVING: tuple[HistoryKind, ...] = ("evolve", "update_neighbor")


def _absent(value: Any) -> bool:
    return value is None


# The parts of a plan keep keys they do not know (written by another version), as the plan and
# history entries do: nothing read is lost when it is written back.
_KEEP_UNKNOWN = ConfigDict(extra="allow")


class TokenUsage(BaseModel):
    model_config = _KEEP_UNKNOWN

    prompt_tokens: int = 0
    completion_tokens: int = 0


class HistoryEntry(BaseModel):
    """One change the machine made to a note, or undid, with its provenance: `trigger` (the
    memory whose arrival or erasure caused it, if any), `before` and `after` (the fields it
    changed, with their values) and `at`; evolution's entries also name the `plan`, `model`
    and `prompt_version`. Kinds: `evolve` (the note's own construction, links and tags),
    `update_neighbor` (another note's evolution rewrote this one), `revert` (an entry undone
    on request, `reverts` names it), `erasure` (what an erased note wrote here, undone) and
    `edit` (the content changed, so what the machine had derived from the old content was
    cleared). An entry whose values were erased keeps its id, kind, trigger and time, with
    `before` and `after` empty and `erased: true`. The rules over entries are core/history.py.

    Entries are stored and served without the fields that do not apply to their kind (no
    nulls beyond `trigger`); unknown keys from another version are kept."""

    # Every entry has these (the others only where its kind uses them): required in OpenAPI.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"required": ["id", "kind", "trigger", "before", "after", "at"]},
    )

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    kind: HistoryKind
    trigger: str | None = Field(
        default=None, description="The memory whose evolution, erasure or edit caused it."
    )
    before: dict[str, Any] = Field(default_factory=dict)
    after: dict[str, Any] = Field(default_factory=dict)
    at: datetime = Field(default_factory=utcnow)
    erased: bool = Field(
        default=False,
        exclude_if=lambda v: not v,
        description="Its values were erased (by an erasure, or a content edit).",
    )
    # Evolution's entries (evolve, update_neighbor): what decided it.
    plan: str | None = Field(default=None, exclude_if=_absent)
    model: str | None = Field(default=None, exclude_if=_absent)
    prompt_version: str | None = Field(default=None, exclude_if=_absent)
    tokens: TokenUsage | None = Field(
        default=None, exclude_if=_absent, description="LLM tokens the decision took."
    )
    # A revert's: the entry it undid.
    reverts: str | None = Field(default=None, exclude_if=_absent)
    # An erasure's or an edit's: the entries it undid, and the memories it was for.
    undone: list[str] | None = Field(default=None, exclude_if=_absent)
    erased_memories: list[str] | None = Field(default=None, exclude_if=_absent)
    edited_memories: list[str] | None = Field(default=None, exclude_if=_absent)

    def writes(self, name: str) -> bool:
        """Whether this entry's own values set field `name` (the machine derived it)."""
        return self.kind in DERIVING and name in self.after


class NeighbourUpdate(BaseModel):
    model_config = _KEEP_UNKNOWN

    id: str
    context: str = ""
    tags: list[str] = Field(default_factory=list)


class PlanBase(BaseModel):
    """What a plan was decided from: a caller's later change to these wins over the plan."""

    model_config = _KEEP_UNKNOWN

    version: int
    # Absent (not null) in a base journalled before the user was recorded: it cannot tell.
    user_id: str | None = None
    keywords: list[str] = Field(default_factory=list)
    context: str = ""
    tags: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Every key but a `user_id` the base was not made or read with: an old base stays
        without one, as a null one would read as "decided for no user"."""
        return {
            key: value
            for key, value in handler(self).items()
            if key != "user_id" or self.knows_user()
        }

    def knows_user(self) -> bool:
        return "user_id" in self.model_fields_set


class Plan(BaseModel):
    """The evolution journal: the changes decided for a pending note, written before any of
    them is applied (evolution/engine.py)."""

    model_config = _KEEP_UNKNOWN

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    trigger: str
    model: str
    prompt_version: str
    usage: TokenUsage = Field(default_factory=TokenUsage)
    construction: dict[str, Any] = Field(default_factory=dict)
    links: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    neighbour_updates: list[NeighbourUpdate] = Field(default_factory=list)
    neighbours_shown: list[str] = Field(default_factory=list)
    # None in a plan journalled before versions were recorded.
    base: PlanBase | None = None
    shown_versions: dict[str, int] = Field(default_factory=dict)

    def entry(
        self, kind: HistoryKind, before: dict[str, Any], after: dict[str, Any], **extra: Any
    ) -> HistoryEntry:
        """The history entry of one change this plan makes."""
        return HistoryEntry(
            kind=kind,
            before=before,
            after=after,
            trigger=self.trigger,
            plan=self.id,
            model=self.model,
            prompt_version=self.prompt_version,
            **extra,
        )


class Note(BaseModel):
    model_config = ConfigDict(frozen=False, extra="forbid")

    id: str = Field(default_factory=new_note_id)
    content: str
    keywords: list[str] = Field(default_factory=list)
    links: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    context: str = ""
    category: str = ""
    timestamp: Instant = Field(default_factory=utcnow)
    last_accessed: Instant = Field(default_factory=utcnow)
    retrieval_count: int = 0
    evolution_history: list[HistoryEntry] = Field(default_factory=list)
    user_id: str | None = None
    agent_id: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    # The memory this one follows in a conversation (the turn before it), if any: construction
    # reads it to write this note's context.
    follows: str | None = None
    status: EvolutionStatus = EvolutionStatus.PENDING
    status_reason: str | None = None
    created_at: Instant = Field(default_factory=utcnow)
    updated_at: Instant = Field(default_factory=utcnow)
    # Bumped on every stored change; lets writers detect that they raced another writer.
    version: int = 1
    # The evolution journal: the changes decided for this pending note, written before any of
    # them is applied, so a restarted worker finishes the same plan instead of asking the LLM
    # again (no note is evolved twice). Internal: not part of the public API.
    plan: Plan | None = None
    # The notes whose evolution rewrote this one (history entries `update_neighbor` name them
    # as trigger): an index for erasure, which must find and scrub what they left here.
    # Internal: not part of the public API.
    influenced_by: list[str] = Field(default_factory=list)
    # For a note created by a request with an Idempotency-Key: "<digest of the key and the
    # request>.<1 if its embedding truncated, else 0>", so a repeat of the request is answered
    # from the note and a different request under the same key is told so. Internal.
    idempotency: str | None = None

    def embedding_text(self) -> str:
        """The text that is embedded: A-MEM enriches the content with the note's attributes."""
        parts = [self.content]
        if self.context:
            parts.append(f"context: {self.context}")
        if self.keywords:
            parts.append(f"keywords: {', '.join(self.keywords)}")
        if self.tags:
            parts.append(f"tags: {', '.join(self.tags)}")
        return "\n".join(parts)


class NoteDraft(BaseModel):
    """A new note as its caller gives it (the API's limits are checked before): the fields a
    caller may set, and an id of its choosing, if any."""

    model_config = ConfigDict(extra="forbid")  # a field the API takes and this lacks: loudly

    content: str
    id: str | None = None
    keywords: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    context: str = ""
    category: str = ""
    timestamp: Instant | None = None
    user_id: str | None = None
    agent_id: str | None = None
    metadata: dict[str, MetadataValue] = Field(default_factory=dict)
    links: list[str] = Field(default_factory=list)
    follows: str | None = None

    def note(self, note_id: str | None = None) -> Note:
        """The new note: with `note_id`, else the chosen id, else a new one."""
        fields = self.model_dump(exclude_none=True)
        if note_id is not None:
            fields["id"] = note_id
        return Note(**fields)


class SearchMode(StrEnum):
    """The rankings a search uses: both fused (hybrid), meaning alone, or words alone."""

    HYBRID = "hybrid"
    DENSE = "dense"
    LEXICAL = "lexical"


class NoteFilter(BaseModel):
    """A conjunction of conditions on a tenant's notes; unset fields do not filter."""

    user_id: str | None = None
    agent_id: str | None = None
    tag: str | None = None
    category: str | None = None
    status: EvolutionStatus | None = None
    since: Instant | None = None
    until: Instant | None = None

    def matches(self, note: Note) -> bool:
        """Whether `note` meets every condition (what the store's where clause selects)."""
        return (
            all(
                getattr(self, name) is None or getattr(note, name) == getattr(self, name)
                for name in ("user_id", "agent_id", "category", "status")
            )
            and (self.tag is None or self.tag in note.tags)
            and (self.since is None or note.timestamp >= self.since)
            and (self.until is None or note.timestamp < self.until)
        )


class ScoredNote(BaseModel):
    note: Note
    # The rank score (fused, for hybrid search); None for notes reached through links.
    score: float | None
    # Cosine similarity to the query, where the dense search found the note.
    similarity: float | None = None
    linked_from: str | None = None
