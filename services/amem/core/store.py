"""The note store: ChromaDB, reached over its HTTP API, is the system of record.

Each tenant's notes live in their own collection (`amem-<tenant>`): a where-filter on a shared
collection costs ~10x on every query (measured: p50 5.5 ms unfiltered vs 62 ms with a 1%
filter at 100k vectors), and a forgotten filter would leak notes across tenants.

A note is one Chroma record: the document is the note's content, the embedding is supplied by
the caller (the embedding service), and every other field is metadata. Chroma keeps string
arrays as arrays (order and duplicates intact) but refuses empty ones, so an empty list is
stored as an absent key, and setting a key to None removes it (Chroma merges metadata on
upsert). Timestamps are integer microseconds since the epoch so that range filters work and
the value round-trips exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import chromadb
import httpx
from chromadb.api import AsyncClientAPI
from chromadb.api.models.AsyncCollection import AsyncCollection
from chromadb.config import Settings
from chromadb.errors import ChromaError, NotFoundError
from prometheus_client import Histogram
from pydantic import TypeAdapter

from amem.core import tracing
from amem.core.breaker import Breaker
from amem.core.errors import InvalidArgument, NotFound, Unavailable
from amem.core.history import HistoryEntry, Plan
from amem.core.model import EvolutionStatus, Note, NoteFilter, ScoredNote

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_LIST_FIELDS = ("keywords", "links", "tags", "influenced_by")
_TIME_FIELDS = ("timestamp", "last_accessed", "created_at", "updated_at")
# Chroma's $or/$in take lists; keep each filter small enough for a quick plan.
_ID_CHUNK = 100

_HISTORY = TypeAdapter(list[HistoryEntry])

_M = TypeVar("_M", bound=Callable[..., Awaitable[Any]])

CHROMA_SECONDS = Histogram(
    "amem_chromadb_request_seconds",
    "ChromaDB call latency, by operation and outcome (ok, timeout, unreachable, http_<code>, "
    "circuit_open, error).",
    ["op", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def to_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICROSECOND


_MIN_US = to_micros(datetime.min.replace(tzinfo=UTC))
_MAX_US = to_micros(datetime.max.replace(tzinfo=UTC))


def from_micros(value: int) -> datetime:
    """The stored instant; clamped to the datetime range, so a note stored out of it by a
    version that did not check (year 0 once got in) can still be read, changed and erased."""
    return _EPOCH + min(max(value, _MIN_US), _MAX_US) * _MICROSECOND


def to_metadata(note: Note) -> dict[str, Any]:
    meta: dict[str, Any] = {name: getattr(note, name) or None for name in _LIST_FIELDS}
    meta.update({name: to_micros(getattr(note, name)) for name in _TIME_FIELDS})
    meta.update(
        context=note.context,
        category=note.category,
        retrieval_count=note.retrieval_count,
        evolution_history=_HISTORY.dump_json(note.evolution_history).decode(),
        user_id=note.user_id,
        agent_id=note.agent_id,
        follows=note.follows,
        metadata=json.dumps(note.metadata, separators=(",", ":")),
        status=note.status.value,
        status_reason=note.status_reason,
        version=note.version,
        plan=None if note.plan is None else note.plan.model_dump_json(exclude_defaults=True),
        idempotency=note.idempotency,
    )
    return meta


def from_record(note_id: str, document: str, meta: dict[str, Any]) -> Note:
    return Note(
        id=note_id,
        content=document,
        **{name: list(meta.get(name) or []) for name in _LIST_FIELDS},
        **{name: from_micros(meta[name]) for name in _TIME_FIELDS},
        context=meta.get("context", ""),
        category=meta.get("category", ""),
        retrieval_count=meta.get("retrieval_count", 0),
        evolution_history=_HISTORY.validate_json(meta.get("evolution_history") or "[]"),
        user_id=meta.get("user_id"),
        agent_id=meta.get("agent_id"),
        follows=meta.get("follows"),
        metadata=json.loads(meta.get("metadata") or "{}"),
        status=EvolutionStatus(meta.get("status", EvolutionStatus.PENDING)),
        status_reason=meta.get("status_reason"),
        version=meta.get("version", 1),
        plan=Plan.model_validate_json(meta["plan"]) if meta.get("plan") else None,
        idempotency=meta.get("idempotency"),
    )


def to_where(flt: NoteFilter | None) -> dict[str, Any] | None:
    """Chroma's where clause for a filter; None when nothing is filtered."""
    if flt is None:
        return None
    clauses: list[dict[str, Any]] = []
    for name in ("user_id", "agent_id", "category"):
        value = getattr(flt, name)
        if value is not None:
            clauses.append({name: value})
    if flt.status is not None:
        clauses.append({"status": flt.status.value})
    if flt.tag is not None:
        clauses.append({"tags": {"$contains": flt.tag}})
    if flt.since is not None:
        clauses.append({"timestamp": {"$gte": to_micros(flt.since)}})
    if flt.until is not None:
        clauses.append({"timestamp": {"$lt": to_micros(flt.until)}})
    return _conjoin(clauses, "$and")


def _conjoin(clauses: list[dict[str, Any]], op: str) -> dict[str, Any] | None:
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {op: clauses}


def _chunks(items: Sequence[str], size: int = _ID_CHUNK) -> Iterable[Sequence[str]]:
    """`items` in requests of a size ChromaDB takes. Callers bound each chunk's call by the
    deadline, not all of them together: a read of many ids takes as long as it must."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _CollectionGone(Unavailable):
    """A tenant's collection vanished behind this process's back (dropped, or ChromaDB came
    back empty and a restore recreated it): the cached handle is stale."""


def _recollect(method: _M) -> _M:
    """Run a tenant method again, with a fresh collection handle, if the cached one is stale:
    a ChromaDB that lost or re-created a collection needs no restart of its clients."""

    @functools.wraps(method)
    async def wrapper(self: NoteStore, tenant: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, tenant, *args, **kwargs)
        except _CollectionGone:
            log.warning("collection of a tenant vanished; reopening it", extra={"tenant": tenant})
            self._collections.pop(tenant, None)
            return await method(self, tenant, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _translate(exc: Exception, timeout_s: float | None) -> tuple[str, Exception] | None:
    """The outcome label and the domain error for a failed Chroma call (None: not Chroma's)."""
    if isinstance(exc, TimeoutError):
        return "timeout", Unavailable(f"chromadb did not answer within {timeout_s}s")
    if isinstance(exc, httpx.TransportError | ConnectionError):
        return "unreachable", Unavailable(f"chromadb is unreachable: {type(exc).__name__}")
    if isinstance(exc, NotFoundError) and "collection" in exc.message().lower():
        return "http_404", _CollectionGone(f"chromadb lost a collection: {exc.message()}")
    if isinstance(exc, ChromaError):
        if exc.code() >= 500:
            return f"http_{exc.code()}", Unavailable(f"chromadb failed: {exc.message()}")
        # Input the API let through and ChromaDB refused: a gap in our validation, logged with
        # ChromaDB's words, which the caller does not need to read.
        log.warning("chromadb refused a request: %s", exc.message())
        return f"http_{exc.code()}", InvalidArgument("the store refused the request")
    return None


@asynccontextmanager
async def chroma_call(
    op: str, timeout_s: float | None, breaker: Breaker | None
) -> AsyncIterator[None]:
    """Bound a Chroma call in time, trace and time it, and turn the client's failures into
    domain errors; `breaker` (if any) refuses the call while ChromaDB keeps failing."""
    started = time.perf_counter()
    outcome = "ok"
    try:
        with (
            breaker.guard() if breaker else contextlib.nullcontext(),
            tracing.span(f"chromadb {op}", **{"db.system": "chromadb", "db.operation": op}),
        ):
            try:
                async with asyncio.timeout(timeout_s):
                    yield
            except Exception as exc:
                # Translated inside the breaker, so that what it counts is the domain error.
                translated = _translate(exc, timeout_s)
                if translated is None:
                    raise
                outcome, error = translated
                raise error from exc
    except Unavailable as exc:
        if exc.__cause__ is None:
            outcome = "circuit_open"  # refused by the breaker without a call
        raise
    except BaseException:
        if outcome == "ok":
            outcome = "error"
        raise
    finally:
        CHROMA_SECONDS.labels(op, outcome).observe(time.perf_counter() - started)


class NoteStore:
    """Tenant-scoped CRUD and vector search over ChromaDB's HTTP API."""

    def __init__(
        self, host: str, port: int, *, timeout_s: float = 10.0, collection_prefix: str = "amem-"
    ) -> None:
        self._timeout = timeout_s
        self._breaker = Breaker(
            "chromadb",
            # A vanished collection is ChromaDB working, not failing.
            counts=lambda exc: (
                isinstance(exc, Unavailable) and not isinstance(exc, _CollectionGone)
            ),
        )
        self._host = host
        self._port = port
        self._prefix = collection_prefix
        self._client: AsyncClientAPI | None = None
        self._collections: dict[str, AsyncCollection] = {}
        self._lock = asyncio.Lock()

    def _call(self, op: str) -> AbstractAsyncContextManager[None]:
        return chroma_call(op, self._timeout, self._breaker)

    async def _get_client(self) -> AsyncClientAPI:
        # Connect lazily: the gateway may start before ChromaDB is up (readiness covers that).
        if self._client is None:
            async with self._lock, self._call("connect"):
                if self._client is None:
                    self._client = await chromadb.AsyncHttpClient(
                        host=self._host,
                        port=self._port,
                        settings=Settings(anonymized_telemetry=False),
                    )
        return self._client

    async def _collection(self, tenant: str) -> AsyncCollection:
        col = self._collections.get(tenant)
        if col is None:
            col = await self.create_collection(self.collection_name(tenant), tenant, exist_ok=True)
            self._collections[tenant] = col
        return col

    def collection_name(self, tenant: str) -> str:
        return f"{self._prefix}{tenant}"

    async def collection(self, tenant: str) -> AsyncCollection:
        """The tenant's collection (created if new)."""
        return await self._collection(tenant)

    async def create_collection(
        self, name: str, tenant: str, *, exist_ok: bool = False
    ) -> AsyncCollection:
        """A collection configured as a tenant's (cosine space), named `name`."""
        client = await self._get_client()
        create = client.get_or_create_collection if exist_ok else client.create_collection
        async with self._call("get_or_create_collection" if exist_ok else "create_collection"):
            return await create(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"amem_tenant": tenant},
            )

    async def client(self) -> AsyncClientAPI:
        return await self._get_client()

    def call(self, op: str) -> AbstractAsyncContextManager[None]:
        """Bound, trace, time and translate one ChromaDB call (see `chroma_call`)."""
        return self._call(op)

    def forget(self, tenant: str) -> None:
        """Drop the cached handle of the tenant's collection (it was replaced)."""
        self._collections.pop(tenant, None)

    async def _live(self, tenant: str, col: AsyncCollection) -> bool:
        """Whether `col` is still the collection named after the tenant: a rebuild
        (core/repair.py) swaps in a new one under the same name, and a cached handle keeps
        reaching the old one, by id. Waits out the moment in a swap when neither has the name."""
        client = await self._get_client()
        deadline = time.monotonic() + 5
        while True:
            try:
                async with self._call("get_collection"):
                    current = await client.get_collection(self.collection_name(tenant))
                return current.id == col.id
            except _CollectionGone:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.05)
            except Unavailable as exc:
                # The note is stored; failing the write now would make the caller retry it
                # into a duplicate. A rebuild's last catch-up covers all but a write that
                # lands in its final moment, which this check was for.
                log.warning("could not confirm the tenant's collection after a write: %s", exc)
                return True

    async def heartbeat(self) -> None:
        client = await self._get_client()
        # Past the breaker: readiness must see ChromaDB as it is, not as the breaker last saw it.
        async with chroma_call("heartbeat", self._timeout, None):
            await client.heartbeat()

    @_recollect
    async def put(
        self, tenant: str, notes: Sequence[Note], embeddings: Sequence[Sequence[float]]
    ) -> None:
        """Store whole notes (insert or replace) in one atomic Chroma write."""
        if len(notes) != len(embeddings):
            raise ValueError("one embedding per note")
        if not notes:
            return
        records = {
            "ids": [n.id for n in notes],
            "embeddings": [list(e) for e in embeddings],
            "documents": [n.content for n in notes],
            "metadatas": [to_metadata(n) for n in notes],
        }
        # New notes come from every gateway, outside the tenant's writer: a write that reached
        # a collection a rebuild has just swapped out is written again to the live one, so no
        # acknowledged note stays behind in the old one when it is deleted.
        for _ in range(5):
            col = await self._collection(tenant)
            async with self._call("upsert"):
                await col.upsert(**records)
            if await self._live(tenant, col):
                return
            log.info("collection of a tenant was rebuilt; writing to the new one")
            self.forget(tenant)
        raise Unavailable("the tenant's collection kept moving (a rebuild?); retry the write")

    @_recollect
    async def update_fields(
        self,
        tenant: str,
        notes: Sequence[Note],
        fields: Iterable[str] | None = None,
        *,
        embeddings: Sequence[Sequence[float]] | None = None,
    ) -> None:
        """Write `fields` (default: all) of existing notes, and their new embeddings if given.

        Writing only some fields leaves the others as a concurrent writer set them.
        """
        if not notes:
            return
        keys = None if fields is None else set(fields)
        col = await self._collection(tenant)
        metadatas = [
            {k: v for k, v in to_metadata(n).items() if keys is None or k in keys} for n in notes
        ]
        documents = [n.content for n in notes] if keys is None or "content" in keys else None
        async with self._call("update"):
            await col.update(
                ids=[n.id for n in notes],
                metadatas=metadatas,
                documents=documents,
                embeddings=None if embeddings is None else [list(e) for e in embeddings],
            )

    async def get(self, tenant: str, note_id: str) -> Note:
        found = await self.get_many(tenant, [note_id])
        if not found:
            raise NotFound(f"memory {note_id!r} not found")
        return found[0]

    @_recollect
    async def get_many(self, tenant: str, ids: Sequence[str]) -> list[Note]:
        """The notes that exist among `ids`, in the order of `ids` (missing ones are skipped)."""
        if not ids:
            return []
        col = await self._collection(tenant)
        by_id: dict[str, Note] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            async with self._call("get"):
                got = await col.get(ids=list(chunk), include=["documents", "metadatas"])
                for note in _notes(got):
                    by_id[note.id] = note
        return [by_id[i] for i in ids if i in by_id]

    @_recollect
    async def list(
        self, tenant: str, flt: NoteFilter | None, *, limit: int, offset: int
    ) -> tuple[list[Note], bool]:
        """A page of notes in insertion order, and whether more follow.

        Chroma returns records in insertion order and keeps a record's place when it is
        updated, so offsets stay valid while notes are added or changed during a listing.
        """
        col = await self._collection(tenant)
        async with self._call("get"):
            got = await col.get(
                where=to_where(flt),
                limit=limit + 1,
                offset=offset,
                include=["documents", "metadatas"],
            )
        notes = _notes(got)
        return notes[:limit], len(notes) > limit

    @_recollect
    async def search(
        self, tenant: str, embedding: Sequence[float], *, k: int, flt: NoteFilter | None
    ) -> list[ScoredNote]:
        """The k notes nearest to `embedding` by cosine similarity, best first."""
        col = await self._collection(tenant)
        async with self._call("query"):
            got = await col.query(
                query_embeddings=[list(embedding)],
                n_results=k,
                where=to_where(flt),
                include=["documents", "metadatas", "distances"],
            )
        ids, docs, metas = got["ids"][0], got["documents"][0], got["metadatas"][0]
        dists = got["distances"][0]
        scored = []
        for i, d, m, dist in zip(ids, docs, metas, dists, strict=True):
            similarity = 1.0 - float(dist)
            scored.append(
                ScoredNote(note=from_record(i, d, m), score=similarity, similarity=similarity)
            )
        return scored

    @_recollect
    async def nearest(
        self, tenant: str, embedding: Sequence[float], *, n: int, flt: NoteFilter | None
    ) -> list[tuple[str, float]]:
        """Ids and cosine similarities of the n notes nearest to `embedding`, best first."""
        col = await self._collection(tenant)
        async with self._call("query"):
            got = await col.query(
                query_embeddings=[list(embedding)],
                n_results=n,
                where=to_where(flt),
                include=["distances"],
            )
        return [
            (i, 1.0 - float(d)) for i, d in zip(got["ids"][0], got["distances"][0], strict=True)
        ]

    @_recollect
    async def ids_changed_since(self, tenant: str, updated_at_us: int) -> list[str]:
        """Ids of the notes stored or changed at or after `updated_at_us`."""
        col = await self._collection(tenant)
        async with self._call("get"):
            got = await col.get(where={"updated_at": {"$gte": updated_at_us}}, include=[])
        return list(got["ids"])

    async def tenants(self) -> list[str]:
        """Every tenant that has a collection."""
        client = await self._get_client()
        async with self._call("list_collections"):
            names = []
            offset = 0
            while True:
                page = await client.list_collections(limit=100, offset=offset)
                names += [c.name for c in page]
                if len(page) < 100:
                    break
                offset += 100
        return [n[len(self._prefix) :] for n in names if n.startswith(self._prefix)]

    @_recollect
    async def count(self, tenant: str) -> int:
        col = await self._collection(tenant)
        async with self._call("count"):
            return await col.count()

    @_recollect
    async def ids_where(self, tenant: str, flt: NoteFilter, limit: int | None = None) -> list[str]:
        """Ids of the notes matching `flt`, in insertion order."""
        col = await self._collection(tenant)
        async with self._call("get"):
            got = await col.get(where=to_where(flt), include=[], limit=limit)
        return list(got["ids"])

    @_recollect
    async def all_ids(self, tenant: str) -> list[str]:
        """Every note id of the tenant, in insertion order."""
        col = await self._collection(tenant)
        async with self._call("get"):
            got = await col.get(include=[])
        return list(got["ids"])

    @_recollect
    async def records(
        self,
        tenant: str,
        ids: Sequence[str],
        *,
        unreadable: Callable[[str, Exception], object] | None = None,
    ) -> list[tuple[Note, list[float]]]:
        """The notes among `ids` that exist, each with its stored embedding, in `ids` order.

        A record that does not decode as a note raises, or, given `unreadable`, is passed to it
        (id, error) and skipped: a backup reports such a record and goes on."""
        col = await self._collection(tenant)
        by_id: dict[str, tuple[Note, list[float]]] = {}
        for chunk in _chunks(list(dict.fromkeys(ids))):
            async with self._call("get"):
                got = await col.get(
                    ids=list(chunk), include=["documents", "metadatas", "embeddings"]
                )
            for i, d, m, e in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            ):
                try:
                    note = from_record(i, d, m)
                except (ValueError, KeyError, TypeError) as exc:
                    if unreadable is None:
                        raise
                    unreadable(i, exc)
                    continue
                by_id[i] = (note, [float(x) for x in e])
        return [by_id[i] for i in ids if i in by_id]

    @_recollect
    async def delete(self, tenant: str, ids: Sequence[str]) -> None:
        col = await self._collection(tenant)
        for chunk in _chunks(list(ids)):
            async with self._call("delete"):
                await col.delete(ids=list(chunk))

    async def linking_to(self, tenant: str, ids: Sequence[str]) -> list[Note]:
        """Notes whose links name any of `ids`."""
        return await self._naming(tenant, "links", ids)

    async def influenced_by(self, tenant: str, ids: Sequence[str]) -> list[Note]:
        """Notes that evolution rewrote on behalf of any of `ids`."""
        return await self._naming(tenant, "influenced_by", ids)

    @_recollect
    async def following(self, tenant: str, ids: Sequence[str]) -> list[Note]:
        """Notes whose `follows` names any of `ids`."""
        col = await self._collection(tenant)
        found: dict[str, Note] = {}
        for chunk in _chunks(list(ids)):
            async with self._call("get"):
                got = await col.get(
                    where={"follows": {"$in": list(chunk)}}, include=["documents", "metadatas"]
                )
            for note in _notes(got):
                found[note.id] = note
        return list(found.values())

    @_recollect
    async def _naming(self, tenant: str, field: str, ids: Sequence[str]) -> list[Note]:
        col = await self._collection(tenant)
        found: dict[str, Note] = {}
        for chunk in _chunks(list(ids)):
            async with self._call("get"):
                where = _conjoin([{field: {"$contains": i}} for i in chunk], "$or")
                got = await col.get(where=where, include=["documents", "metadatas"])
                for note in _notes(got):
                    found[note.id] = note
        return list(found.values())

    async def close(self) -> None:
        self._collections.clear()
        self._client = None

    def system(self, name: str) -> SystemCollection:
        """One of amem's own collections on the same ChromaDB."""
        return SystemCollection(name, self._host, self._port, timeout_s=self._timeout)


def _notes(got: Any) -> list[Note]:
    return [
        from_record(i, d, m)
        for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    ]


# amem's own collections (SystemCollection): managed API keys, and LLM tokens per tenant and day.
API_KEYS_COLLECTION = "amemsys-api-keys"
USAGE_COLLECTION = "amemsys-usage"


class SystemCollection:
    """A small ChromaDB collection of amem's own records (API keys, usage counters): ids and
    metadata, a placeholder vector each, nothing searched. Named `amemsys-*`, outside the
    tenants' `amem-*` namespace. Every record's metadata names its `tenant`."""

    def __init__(self, name: str, host: str, port: int, *, timeout_s: float = 10.0) -> None:
        self._name = name
        self._host, self._port, self._timeout = host, port, timeout_s
        self._client: AsyncClientAPI | None = None

    async def _collection(self) -> AsyncCollection:
        async with chroma_call("get_or_create_collection", self._timeout, None):
            if self._client is None:
                self._client = await chromadb.AsyncHttpClient(
                    host=self._host, port=self._port, settings=Settings(anonymized_telemetry=False)
                )
            return await self._client.get_or_create_collection(self._name, embedding_function=None)

    async def get(self, ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Metadata by id: of `ids` (those that exist), or of every record."""
        col = await self._collection()
        async with chroma_call("get", self._timeout, None):
            got = await col.get(ids=list(ids) if ids is not None else None, include=["metadatas"])
        return dict(zip(got["ids"], got["metadatas"], strict=True))

    async def put(self, records: dict[str, dict[str, Any]]) -> None:
        col = await self._collection()
        async with chroma_call("upsert", self._timeout, None):
            await col.upsert(
                ids=list(records),
                embeddings=[[0.0]] * len(records),
                metadatas=list(records.values()),
            )
