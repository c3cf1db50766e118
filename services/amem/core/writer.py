"""The one writer of a tenant's stored notes.

Notes are created by the gateways (new ids, group-committed), but every change to a stored
note goes through its tenant's writer: the caller's PATCH and DELETE, a retry of a failed
evolution, erasure, evolution, revert. In a deployment that is the tenant's evolution owner
(evolution/scheduler.py), which the gateways call over gRPC (`Update`, `Erase`, `Retry`); a
gateway with no evolution service holds a writer of its own. ChromaDB has no conditional
write, so the writer's per-tenant lock is what makes a read-check-write sequence atomic, and
every writer of a tenant must be in one process:

- a caller's change is applied under the lock, after its If-Match check (412 when the stored
  version is not one the caller named);
- evolution decides without the lock (an LLM call takes seconds) and writes with it, as a
  compare-and-set on the versions it decided from; when a caller changed the note in between,
  it merges (the caller's fields win) or decides again (engine.py);
- an erasure holds the lock from the first read to the delete, so no evolution write lands
  between its unlink and its delete.

A content change re-derives what the machine derived from the old content: each of keywords,
context and tags that an evolution wrote (and the caller did not set in the same change) goes
back to its value from before the machine first changed it (the caller's, or empty); links the
note's evolution added are removed; every history entry loses its values (`erased`); an `edit`
entry records what was cleared; neighbours this note's evolution rewrote are scrubbed as by an
erasure; and the note is queued for evolution again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from amem.core import history
from amem.core.erasure import ErasureReceipt, ScrubbedMemory
from amem.core.errors import Conflict, InvalidArgument, NotFound, PreconditionFailed
from amem.core.model import EvolutionStatus, Note, NoteFilter, utcnow
from amem.core.store import NoteStore

_NULLABLE = frozenset({"user_id", "agent_id"})
# Fields the machine derives from the content (construction) and may rewrite (evolution).
DERIVABLE = ("keywords", "context", "tags")
_SCRUBBED_FIELDS = {
    "context",
    "tags",
    "evolution_history",
    "influenced_by",
    "version",
    "updated_at",
}


@dataclass
class Edited:
    note: Note
    truncated: bool  # the note's embedded text was cut at the model's token limit
    touched: list[str] = field(default_factory=list)  # other notes whose text changed
    requeue: bool = False  # the note waits for evolution (again)


@dataclass
class Erased:
    receipt: ErasureReceipt
    touched: list[str] = field(default_factory=list)  # other notes whose text changed


class Editor(Protocol):
    """What the gateway asks of a tenant's writer: local (`NoteWriter`) or the evolution
    owner's over gRPC (`EvolutionClient`)."""

    async def update(
        self,
        tenant: str,
        note_id: str,
        changes: dict[str, Any],
        *,
        if_match: frozenset[int] | None = None,
    ) -> Edited: ...

    async def erase(
        self,
        tenant: str,
        *,
        ids: Sequence[str] | None = None,
        scope: NoteFilter | None = None,
        if_match: frozenset[int] | None = None,
    ) -> Erased: ...

    async def retry(self, tenant: str, note_id: str) -> Edited: ...


def check_if_match(note: Note, if_match: frozenset[int] | None) -> None:
    """PreconditionFailed unless the note's version is one of `if_match` (None: no condition)."""
    if if_match is not None and note.version not in if_match:
        raise PreconditionFailed(
            f"memory {note.id!r} is at version {note.version}, not "
            + (", ".join(str(v) for v in sorted(if_match)) or "a version given strongly")
            + ": read it again and retry"
        )


class _Vectors(Protocol):
    vectors: list[list[float]]
    model: str  # the model that wrote them


class Embedder(Protocol):
    """What the writer needs of the embedding service's client (amem.embedding.client): the
    shared library names no service's code."""

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> _Vectors: ...


class NoteWriter:
    def __init__(self, store: NoteStore, embedder: Embedder) -> None:
        self._store = store
        self._embedder = embedder
        self._locks: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def locked(self, tenant: str) -> AsyncIterator[None]:
        """Exclusive use of the tenant's stored notes for a read-check-write sequence."""
        lock = self._locks.get(tenant)
        if lock is None:
            lock = self._locks[tenant] = asyncio.Lock()
        async with lock:
            yield

    async def update(
        self,
        tenant: str,
        note_id: str,
        changes: dict[str, Any],
        *,
        if_match: frozenset[int] | None = None,
    ) -> Edited:
        """Change some of a note's fields (a PATCH; `changes` as JSON values)."""
        for name, value in changes.items():
            if value is None and name not in _NULLABLE:
                raise InvalidArgument(f"{name} cannot be null")
        if note_id in (changes.get("links") or ()):
            raise InvalidArgument("a memory cannot link to itself")
        async with self.locked(tenant):
            note = await self._store.get(tenant, note_id)
            check_if_match(note, if_match)
            if changes.get("links"):
                await self._store.check_exist(
                    tenant, set(changes["links"]), "links name memories that do not exist"
                )
            try:
                updated = Note.model_validate({**note.model_dump(), **changes})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise InvalidArgument(f"{where}: {first['msg']}") from exc
            fields = set(changes)
            neighbours: list[Note] = []
            content_changed = updated.content != note.content
            if content_changed:
                fields |= _rederive(note, updated, set(changes))
                neighbours = [n for n, _ in await self._scrubbed(tenant, [note_id], kind="edit")]
            updated.version = note.version + 1
            updated.updated_at = utcnow()
            fields |= {"version", "updated_at"}
            reembed = updated.embedding_text() != note.embedding_text()
            texts = [updated.embedding_text()] if reembed else []
            texts += [n.embedding_text() for n in neighbours]
            embedded = await self._embedder.embed(texts) if texts else None
            vectors = embedded.vectors if embedded else []
            # Neighbours first: a change cut short after them is retried whole (its content
            # still differs), while one cut short after the note would leave them unscrubbed.
            if neighbours:
                await self._store.update_fields(
                    tenant, neighbours, _SCRUBBED_FIELDS, embeddings=vectors[int(reembed) :]
                )
            await self._store.update_fields(
                tenant, [updated], fields, embeddings=vectors[:1] if reembed else None
            )
        return Edited(
            note=updated,
            truncated=bool(reembed and embedded and embedded.truncated[0]),
            touched=[n.id for n in neighbours],
            requeue=content_changed,
        )

    async def retry(self, tenant: str, note_id: str) -> Edited:
        """Queue a `failed` note for evolution again (a pending one is queued as it is);
        Conflict for one already evolved."""
        async with self.locked(tenant):
            note = await self._store.get(tenant, note_id)
            if note.status is EvolutionStatus.DONE:
                raise Conflict(f"memory {note_id!r} is already evolved")
            if note.status is EvolutionStatus.FAILED:
                note.status, note.status_reason = EvolutionStatus.PENDING, None
                note.version += 1
                note.updated_at = utcnow()
                fields = {"status", "status_reason", "version", "updated_at"}
                await self._store.update_fields(tenant, [note], fields)
        return Edited(note=note, truncated=False, requeue=True)

    async def erase(
        self,
        tenant: str,
        *,
        ids: Sequence[str] | None = None,
        scope: NoteFilter | None = None,
        if_match: frozenset[int] | None = None,
    ) -> Erased:
        """Erase notes (`ids`, or every note in `scope`): unlink them, clear `follows` pointers
        to them, scrub what their evolution wrote elsewhere (core/erasure.py), then delete
        them. In that order, an erasure cut short (the embedding service down for the scrub's
        re-embedding, a crash) leaves the notes in place and is finished by its retry. One id
        that does not exist: NotFound."""
        async with self.locked(tenant):
            if scope is not None:
                ids = await self._store.ids_where(tenant, scope)
            else:
                found = await self._store.get_many(tenant, list(ids or ()))
                if ids is not None and len(ids) == 1:
                    if not found:
                        raise NotFound(f"memory {ids[0]!r} not found")
                    check_if_match(found[0], if_match)
                ids = [n.id for n in found]
            at = utcnow()
            unlinked = await self._unlink(tenant, ids)
            unfollowed = await self._unfollow(tenant, ids)
            scrubbed = await self._scrubbed(tenant, ids, kind="erasure")
            if scrubbed:
                notes = [n for n, _ in scrubbed]
                vectors = (await self._embedder.embed([n.embedding_text() for n in notes])).vectors
                await self._store.update_fields(tenant, notes, _SCRUBBED_FIELDS, embeddings=vectors)
            await self._store.delete(tenant, ids)
        return Erased(
            ErasureReceipt(
                erased=list(ids),
                unlinked=unlinked,
                unfollowed=unfollowed,
                scrubbed=[line for _, line in scrubbed],
                at=at,
            ),
            touched=[n.id for n, _ in scrubbed],
        )

    async def _scrubbed(
        self, tenant: str, ids: Sequence[str], *, kind: Literal["erasure", "edit"]
    ) -> list[tuple[Note, ScrubbedMemory]]:
        """The notes that the evolution of `ids` rewrote, scrubbed of it (not yet written),
        each with its receipt line."""
        gone = set(ids)
        if not gone:
            return []
        changed: list[tuple[Note, ScrubbedMemory]] = []
        for note in await self._store.influenced_by(tenant, list(gone)):
            if note.id in gone:
                continue
            result = history.scrub(note, gone, kind=kind)
            if result is None:
                continue
            updated, line = result
            updated.version = note.version + 1
            updated.updated_at = utcnow()
            changed.append((updated, line))
        return changed

    async def _unlink(self, tenant: str, ids: Sequence[str]) -> list[str]:
        """Remove `ids` from other notes' links; returns the notes changed."""
        if not ids:
            return []
        gone = set(ids)
        linking = [n for n in await self._store.linking_to(tenant, ids) if n.id not in gone]
        now = utcnow()
        for note in linking:
            note.links = [link for link in note.links if link not in gone]
            note.version += 1
            note.updated_at = now
        await self._store.update_fields(tenant, linking, {"links", "version", "updated_at"})
        return [n.id for n in linking]

    async def _unfollow(self, tenant: str, ids: Sequence[str]) -> list[str]:
        """Clear `follows` where it names one of `ids`; returns the notes changed."""
        if not ids:
            return []
        gone = set(ids)
        following = [n for n in await self._store.following(tenant, ids) if n.id not in gone]
        now = utcnow()
        for note in following:
            note.follows = None
            note.version += 1
            note.updated_at = now
        await self._store.update_fields(tenant, following, {"follows", "version", "updated_at"})
        return [n.id for n in following]


def _rederive(note: Note, updated: Note, given: set[str]) -> set[str]:
    """Clear in `updated` what the machine derived from `note`'s content (the module's doc);
    returns the fields changed."""
    changed = history.rederive(note, updated, given, DERIVABLE)
    updated.status, updated.status_reason, updated.plan = EvolutionStatus.PENDING, None, None
    return changed | {"status", "status_reason", "plan"}
