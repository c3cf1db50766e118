"""What the REST API does, independent of HTTP: validation across notes, embedding, storage.
It takes and returns domain types (core/model.py); the routes convert from and to the wire
schemas (amem/schemas.py)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

from amem.core.erasure import ErasureReceipt
from amem.core.errors import Conflict, InvalidArgument, QuotaExceeded, Unavailable
from amem.core.model import EvolutionStatus, Note, NoteDraft, NoteFilter, ScoredNote, SearchMode
from amem.core.quotas import Quotas, TenantUsage, UsageStore, today
from amem.core.store import NoteStore
from amem.core.writer import Editor, Erased
from amem.embedding.client import EmbeddingClient
from amem.evolution.client import EvolutionClient
from amem.gateway.access import AccessRecorder
from amem.gateway.commit import GroupCommit, WriteEmbedder
from amem.gateway.evolution import EvolutionHook
from amem.gateway.lexical import LexicalIndex
from amem.gateway.queries import QueryVectors

_IDEMPOTENT_IDS = uuid.UUID("3f1c2b7e-9a44-4f4e-8f7c-5d2a6b1e0c93")


def idempotent_id(tenant: str, key: str, index: int) -> str:
    """The id of the `index`-th note created by the request with Idempotency-Key `key`."""
    return str(uuid.uuid5(_IDEMPOTENT_IDS, f"{tenant}\x00{key}\x00{index}"))


def fuse(dense: Sequence[str], lexical: Sequence[str], rrf_k: int) -> dict[str, float]:
    """Reciprocal rank fusion (Cormack et al., 2009) of two rankings of ids: id -> score, best
    first. Equal scores come from equal ranks in different rankings; the BM25 hit goes first,
    since a shared term is evidence and the dense ranking always has a nearest note (with the
    dense hit first, a query's unique token, an id or a code name, lost to an unrelated
    neighbour)."""
    fused: dict[str, float] = {}
    for ranking in (dense, lexical):
        for rank, note_id in enumerate(ranking):
            fused[note_id] = fused.get(note_id, 0.0) + 1.0 / (rrf_k + rank + 1)
    matched = set(lexical)
    return {i: fused[i] for i in sorted(fused, key=lambda i: (-fused[i], i not in matched))}


class MemoryService:
    def __init__(
        self,
        store: NoteStore,
        embedder: EmbeddingClient,
        evolution: EvolutionHook,
        evolution_client: EvolutionClient | None = None,
        *,
        editor: Editor,
        lexical: LexicalIndex | None = None,
        access: AccessRecorder | None = None,
        rrf_k: int = 20,
        candidates: int = 50,
        quotas: Quotas | None = None,
        usage: UsageStore | None = None,
    ):
        self._store = store
        self._evolution = evolution
        self._evolution_client = evolution_client
        # The tenant's writer, which every change to a stored note goes through (core/writer.py).
        self._editor = editor
        self._lexical = lexical
        self._access = access
        self._commit = GroupCommit(store)
        self._write_embedder = WriteEmbedder(embedder)
        self._queries = QueryVectors(embedder)
        self._rrf_k = rrf_k
        self._candidates = candidates
        self._quotas = quotas or Quotas()
        self._usage = usage

    async def create(
        self,
        tenant: str,
        items: Sequence[NoteDraft],
        *,
        conversation: bool = False,
        idempotency: tuple[str, str] | None = None,
    ) -> tuple[list[tuple[Note, bool]], bool]:
        """Store new notes atomically; returns each note with whether its embedding truncated,
        and whether this repeated an earlier request (nothing was written).

        In a conversation, each note that names no `follows` follows the one before it. With
        `idempotency` (the request's Idempotency-Key and a digest of the request), the notes'
        ids derive from the key: a repeat finds them and is answered from them, and the same
        key with another request is refused. Identical requests racing each other write the
        same ids, so they too leave one copy.
        """
        ids: list[str] | None = None
        mark = ""
        if idempotency is not None:
            key, digest = idempotency
            # What the notes of this request carry: the key and the request, together.
            mark = hashlib.sha256(f"{key}\x00{digest}".encode()).hexdigest()
            ids = [item.id or idempotent_id(tenant, key, i) for i, item in enumerate(items)]
            existing = await self._store.get_many(tenant, ids)
            if existing:
                if all((n.idempotency or "").split(".")[0] == mark for n in existing):
                    return [(n, (n.idempotency or "").endswith(".1")) for n in existing], True
                chosen = {item.id for item in items if item.id}
                if taken := [n.id for n in existing if n.id in chosen]:
                    raise Conflict(f"a memory with this id exists already: {', '.join(taken)}")
                raise InvalidArgument(
                    "Idempotency-Key: this key was used with another request; use a new key "
                    "for a new request"
                )
        await self._check_notes_quota(tenant, len(items))
        notes = [item.note(ids[i] if ids else None) for i, item in enumerate(items)]
        await self._check_new_ids(tenant, [item.id for item in items if item.id])
        named = {n.follows for n in notes if n.follows}
        if conversation:
            for before, note in zip(notes, notes[1:], strict=False):
                note.follows = note.follows or before.id
        links = {link for n in notes for link in n.links}
        await self._store.check_exist(tenant, links, "links name memories that do not exist")
        await self._store.check_exist(tenant, named, "follows names a memory that does not exist")
        embedded = await self._write_embedder.embed([n.embedding_text() for n in notes])
        if idempotency is not None:
            for note, (_, truncated) in zip(notes, embedded, strict=True):
                note.idempotency = f"{mark}.{int(truncated)}"
        await self._commit.put(tenant, notes, [vector for vector, _ in embedded])
        await self._index(tenant, notes)
        await self._evolution.notes_changed(tenant, [n.id for n in notes])
        written = [(note, truncated) for note, (_, truncated) in zip(notes, embedded, strict=True)]
        return written, False

    async def _check_notes_quota(self, tenant: str, adding: int) -> None:
        """Refuse writes beyond the tenant's `notes` quota. Concurrent writes can overshoot it
        by what they write together: the count and the write are not one transaction."""
        limit = self._quotas.for_tenant(tenant).notes
        if limit is None:
            return
        held = await self._store.count(tenant)
        if held + adding > limit:
            raise QuotaExceeded(
                f"this tenant holds {held} memories of its quota of {limit}; "
                f"{adding} more would exceed it"
            )

    async def usage(self, tenant: str) -> TenantUsage:
        """What the tenant holds and spends today, against its quotas."""
        quota = self._quotas.for_tenant(tenant)
        day = today()
        tokens = await self._usage.fresh_tokens(tenant, day) if self._usage else 0
        return TenantUsage(
            tenant=tenant,
            notes=await self._store.count(tenant),
            notes_quota=quota.notes,
            day=day,
            llm_tokens=tokens,
            llm_tokens_per_day=quota.llm_tokens_per_day,
        )

    async def _index(self, tenant: str, notes: Sequence[Note]) -> None:
        if self._lexical is not None:
            await self._lexical.upsert(tenant, notes)

    async def _unindex(self, tenant: str, ids: Sequence[str]) -> None:
        if self._lexical is not None:
            await self._lexical.remove(tenant, ids)

    async def get(self, tenant: str, note_id: str) -> Note:
        return await self._store.get(tenant, note_id)

    async def wait_settled(self, tenant: str, notes: list[Note], timeout_s: float) -> list[Note]:
        """The notes once none is `pending` any more, or as they are when `timeout_s` ends."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        current = notes
        while any(n.status is EvolutionStatus.PENDING for n in current):
            if time.monotonic() + delay > deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
            current = await self._store.get_many(tenant, [n.id for n in notes])
        return current

    async def retry_evolution(self, tenant: str, note_id: str) -> Note:
        """Queue a failed note for evolution again (through the tenant's writer)."""
        edited = await self._editor.retry(tenant, note_id)
        await self._evolution.notes_changed(tenant, [note_id])
        return edited.note

    async def revert(self, tenant: str, note_id: str, entry_id: str, timeout_s: float) -> Note:
        await self._store.get(tenant, note_id)  # 404 for an unknown id, evolution or not
        if self._evolution_client is None:
            raise Unavailable("no evolution service is configured", retry_after=None)
        await self._evolution_client.revert(tenant, note_id, entry_id, timeout_s=timeout_s)
        return await self._store.get(tenant, note_id)

    async def list(
        self, tenant: str, flt: NoteFilter, *, limit: int, offset: int
    ) -> tuple[list[Note], bool]:
        return await self._store.list(tenant, flt, limit=limit, offset=offset)

    async def update(
        self,
        tenant: str,
        note_id: str,
        changes: dict[str, Any],
        *,
        if_match: frozenset[int] | None = None,
    ) -> tuple[Note, bool]:
        """Change a note through the tenant's writer (`changes`: the fields to set, as JSON
        values); returns it and whether its embedding truncated."""
        edited = await self._editor.update(tenant, note_id, changes, if_match=if_match)
        await self._index(
            tenant, [edited.note, *await self._store.get_many(tenant, edited.touched)]
        )
        if edited.requeue:
            await self._evolution.notes_changed(tenant, [note_id])
        return edited.note, edited.truncated

    async def delete(
        self, tenant: str, note_id: str, *, if_match: frozenset[int] | None = None
    ) -> ErasureReceipt:
        return await self._erased(
            tenant, await self._editor.erase(tenant, ids=[note_id], if_match=if_match)
        )

    async def erase(self, tenant: str, flt: NoteFilter) -> ErasureReceipt:
        """Delete every note matching a scoped filter (user_id and/or agent_id)."""
        return await self._erased(tenant, await self._editor.erase(tenant, scope=flt))

    async def _erased(self, tenant: str, erased: Erased) -> ErasureReceipt:
        await self._unindex(tenant, erased.receipt.erased)
        await self._index(tenant, await self._store.get_many(tenant, erased.touched))
        return erased.receipt

    async def search(
        self,
        tenant: str,
        query: str,
        *,
        k: int,
        flt: NoteFilter,
        include_links: bool,
        mode: SearchMode = SearchMode.HYBRID,
        max_linked: int = 100,
    ) -> tuple[list[ScoredNote], SearchMode, bool]:
        """The best k notes for the query, the rankings that were actually used, and whether
        the linked notes (with `include_links`: those that meet the filter too) were cut at
        `max_linked`. Each note found counts a retrieval (written behind, see
        `amem.gateway.access`)."""
        if mode is SearchMode.DENSE or self._lexical is None:
            hits = await self._store.search(tenant, await self._queries.vector(query), k=k, flt=flt)
            used = SearchMode.DENSE
        else:
            hits, used = await self._fused(tenant, query, k=k, flt=flt, mode=mode)
        truncated = False
        if include_links:
            seen = {h.note.id for h in hits}
            wanted: dict[str, str] = {}
            for hit in hits:
                for link in hit.note.links:
                    if link not in seen and link not in wanted:
                        wanted[link] = hit.note.id
            linked = [n for n in await self._store.get_many(tenant, list(wanted)) if flt.matches(n)]
            truncated = len(linked) > max_linked
            for note in linked[:max_linked]:
                hits.append(ScoredNote(note=note, score=None, linked_from=wanted[note.id]))
        if self._access is not None:
            self._access.record(tenant, [h.note.id for h in hits])
        return hits, used, truncated

    async def _dense(self, tenant: str, query: str, n: int, flt: NoteFilter):
        return await self._store.nearest(tenant, await self._queries.vector(query), n=n, flt=flt)

    async def _fused(
        self, tenant: str, query: str, *, k: int, flt: NoteFilter, mode: SearchMode
    ) -> tuple[list[ScoredNote], SearchMode]:
        """The dense and BM25 rankings, fused (`fuse`)."""
        assert self._lexical is not None
        n = max(4 * k, self._candidates)
        lexical_ids = self._lexical.search(tenant, query, limit=n, flt=flt)
        if mode is SearchMode.LEXICAL:
            dense, lexical = [], await lexical_ids
            if lexical is None:
                raise Unavailable(
                    "this tenant's BM25 index is loading on this gateway", retry_after=1
                )
        else:
            dense, lexical = await asyncio.gather(self._dense(tenant, query, n, flt), lexical_ids)
        used = mode if lexical is not None else SearchMode.DENSE
        fused = fuse([i for i, _ in dense], lexical or [], self._rrf_k)
        best = list(fused)[:k]
        similarity = dict(dense)
        return [
            ScoredNote(note=note, score=fused[note.id], similarity=similarity.get(note.id))
            for note in await self._store.get_many(tenant, best)
        ], used

    async def neighbourhood(
        self, tenant: str, note_id: str, depth: int, *, limit: int
    ) -> tuple[list[tuple[Note, int]], list[tuple[str, str]], bool]:
        """Notes reachable from `note_id` over links within `depth` hops, breadth first, at
        most `limit` of them (the root included), the links between them, and whether more
        were reachable."""
        root = await self._store.get(tenant, note_id)
        found: dict[str, tuple[Note, int]] = {root.id: (root, 0)}
        frontier = [root]
        truncated = False
        for level in range(1, depth + 1):
            wanted = [i for n in frontier for i in n.links if i not in found]
            wanted = list(dict.fromkeys(wanted))
            room = limit - len(found)
            # Read at most what fits: a missing (erased) link must not cost a truncation.
            frontier = []
            while wanted and room > len(frontier):
                batch, wanted = wanted[: room - len(frontier)], wanted[room - len(frontier) :]
                frontier += await self._store.get_many(tenant, batch)
            truncated = truncated or bool(wanted)
            for note in frontier:
                found[note.id] = (note, level)
            if not frontier:
                break
        edges = [(n.id, link) for n, _ in found.values() for link in n.links if link in found]
        return list(found.values()), edges, truncated

    async def backlinks(self, tenant: str, note_id: str, *, limit: int) -> list[str]:
        """Ids of the notes whose links name `note_id`, at most `limit` of them."""
        return await self._store.ids_linking_to(tenant, note_id, limit=limit)

    async def _check_new_ids(self, tenant: str, ids: list[str]) -> None:
        """Ids callers chose must be new (and distinct). Two creates racing with one id leave
        the later one: the check and the write are not one transaction."""
        if len(set(ids)) != len(ids):
            raise InvalidArgument("ids: the batch names one id more than once")
        taken = [n.id for n in await self._store.get_many(tenant, ids)] if ids else []
        if taken:
            raise Conflict(f"a memory with this id exists already: {', '.join(taken)}")
