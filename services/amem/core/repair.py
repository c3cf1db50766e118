"""Audit and repair of a tenant's vector index.

ChromaDB 1.5.9 can stop returning live records from `query()` after deletes and upserts,
while `get()` still returns them (chroma-core/chroma#7758, open; reproduced there with 4,000
inserts, half deleted, a third of the rest upserted). amem upserts all the time (evolution
re-embeds notes), and after a kill -9 of ChromaDB the fault test found 1-11 of 46 notes that
their own stored vector no longer found. A collection built afresh from the same records
reaches all of them. So:

- `audit` asks, for each note, whether a query with its own stored vector returns it. Notes
  with identical vectors (the same memory stored twice) tie at distance 0: when the tie fills
  the page the query is widened (up to `_MAX_WIDTH` results). A note that is missing while an
  identical vector was returned is *shadowed* (counted apart, as undetermined): a search for
  its text finds its twin, and HNSW does not keep every copy of a vector reachable (a fresh
  index of 160 copies each of 10 vectors missed 12, measured here). Only a note that no
  query with its vector can find, and that has no twin found instead, is unreachable.
- `sample` picks notes for the periodic check the evolution service runs on the tenants it
  owns (`amem_store_unreachable_notes`), `amem doctor` audits every note on demand.
- `rebuild` copies a tenant's records, online, into a fresh collection and swaps it in under
  the tenant's name (`amem reindex --tenant T`, run by the tenant's owner):
  1. copy every record, then what changed meanwhile (found by `updated_at`, with a margin;
     a record already copied at its current `updated_at` is skipped), until a pass copies
     little;
  2. under the tenant writer's lock (no change to a stored note meanwhile): copy what changed,
     drop what was deleted, rename the old collection away and the new one to the tenant's
     name, copy what reached the old one in between, delete the old one.
  New notes come from the gateways, outside the writer: a gateway that still holds the old
  collection's handle finds, right after its write, that the name has moved, and writes again
  to the live collection (NoteStore.put); after the old one is deleted its calls fail over to
  the live one by name. Retrieval counts written to the old collection during a rebuild may
  be lost (statistics, never acknowledged writes). The tenant's evolution is paused meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from chromadb.api.models.AsyncCollection import AsyncCollection

from amem.core.errors import InvalidArgument, Unavailable
from amem.core.model import utcnow
from amem.core.store import NoteStore, from_record, models, to_micros
from amem.core.writer import Embedder, NoteWriter

log = logging.getLogger(__name__)

# Distances at or under this are exact ties (identical vectors; cosine distance of a unit
# vector with itself is ~1e-7 in float32).
_TIE = 1e-5
_MAX_WIDTH = 1_000
_PAGE = 500
# A rebuild's copy passes stop once a pass copies fewer notes than this, or after _PASSES.
_SETTLED = 100
_PASSES = 5
# Notes stamped this long before a pass started are copied again by the next: writes in
# flight, and clocks that differ between pods.
_MARGIN = timedelta(seconds=30)
# Texts per embedding call of a re-embed (the service takes at most 256 per call by default).
_EMBED_CHUNK = 64
# Collections of rebuilds in progress (and the old ones being retired): outside the tenants'
# `amem-` names, so never taken for a tenant.
REBUILD_PREFIX = "amemrx-"


@dataclass
class Audit:
    tenant: str
    checked: int = 0
    unreachable: list[str] = field(default_factory=list)
    # Shadowed by an identical vector, or in a tie wider than _MAX_WIDTH.
    undetermined: list[str] = field(default_factory=list)

    def add(self, other: Audit) -> None:
        self.checked += other.checked
        self.unreachable += other.unreachable
        self.undetermined += other.undetermined


async def audit(store: NoteStore, tenant: str, ids: Sequence[str], *, batch: int = 50) -> Audit:
    """Which of `ids` a query with their own stored vector does not find."""
    col = await store.collection(tenant)
    result = Audit(tenant)
    async with store.call("count"):
        total = await col.count()
    for start in range(0, len(ids), batch):
        async with store.call("get"):
            got = await col.get(ids=list(ids[start : start + batch]), include=["embeddings"])
        vectors = dict(zip(got["ids"], got["embeddings"], strict=True))
        pending = list(vectors)
        width = min(10, total)
        while pending and width:
            async with store.call("query"):
                found = await col.query(
                    query_embeddings=[list(vectors[i]) for i in pending],
                    n_results=width,
                    include=["distances"],
                )
            tied = []
            for note_id, hits, distances in zip(
                pending, found["ids"], found["distances"], strict=True
            ):
                if note_id in hits:
                    continue
                twins = sum(1 for d in distances if d <= _TIE)
                if twins == width:
                    tied.append(note_id)  # a tie at distance 0 fills the page: look further
                elif twins:
                    result.undetermined.append(note_id)  # shadowed by an identical vector
                else:
                    result.unreachable.append(note_id)
            result.checked += len(pending) - len(tied)
            if tied and width >= min(_MAX_WIDTH, total):
                result.undetermined += tied
                result.checked += len(tied)
                tied = []
            pending, width = tied, min(width * 8, _MAX_WIDTH, total)
    return result


async def sample(store: NoteStore, tenant: str, size: int) -> list[str]:
    """Up to `size` note ids from two random places in the tenant's insertion order."""
    col = await store.collection(tenant)
    async with store.call("count"):
        total = await col.count()
    if total <= size:
        return await store.all_ids(tenant)
    ids: list[str] = []
    for _ in range(2):
        offset = random.randrange(0, total - size // 2 + 1)  # noqa: S311 (not security)
        async with store.call("get"):
            got = await col.get(limit=size - size // 2, offset=offset, include=[])
        ids += got["ids"]
    return list(dict.fromkeys(ids))


@dataclass
class Rebuilt:
    tenant: str
    notes: int  # in the collection swapped in
    copied: int  # record copies made, catch-up passes included
    passes: int
    seconds: float


async def _all_ids(store: NoteStore, col: AsyncCollection) -> list[str]:
    async with store.call("get"):
        return list((await col.get(include=[]))["ids"])


async def _changed_since(store: NoteStore, col: AsyncCollection, stamp_us: int) -> list[str]:
    async with store.call("get"):
        got = await col.get(where={"updated_at": {"$gte": stamp_us}}, include=[])
    return list(got["ids"])


async def _copy(
    store: NoteStore,
    source: AsyncCollection,
    target: AsyncCollection,
    ids: Iterable[str],
    seen: dict[str, object],
    embedder: Embedder | None = None,
    model: str | None = None,
) -> int:
    """Copy records (document, vector, metadata, as stored) by id, skipping those whose
    `updated_at` is what `seen` says was copied last; returns how many were copied. With an
    `embedder`, each record's vector is made anew from its note's embedding text by `model`."""
    ids = list(dict.fromkeys(ids))
    copied = 0
    for start in range(0, len(ids), _PAGE):
        page = ids[start : start + _PAGE]
        if seen:
            async with store.call("get"):
                stamps = await source.get(ids=page, include=["metadatas"])
            page = [
                i
                for i, meta in zip(stamps["ids"], stamps["metadatas"], strict=True)
                if i not in seen or seen[i] != (meta or {}).get("updated_at")
            ]
            if not page:
                continue
        async with store.call("get"):
            got = await source.get(ids=page, include=["documents", "metadatas", "embeddings"])
        if not got["ids"]:
            continue
        vectors = [list(e) for e in got["embeddings"]]
        if embedder is not None:
            vectors = await _embedded(embedder, got, model)
        async with store.call("upsert"):
            await target.upsert(
                ids=got["ids"],
                embeddings=vectors,
                documents=got["documents"],
                metadatas=got["metadatas"],
            )
        for i, meta in zip(got["ids"], got["metadatas"], strict=True):
            seen[i] = (meta or {}).get("updated_at")
        copied += len(got["ids"])
    return copied


def _embedding_text(note_id: str, document: str, meta: Any) -> str:
    try:
        return from_record(note_id, document, meta).embedding_text()
    except (ValueError, KeyError, TypeError):
        return document  # a record that does not decode (doctor names it) keeps its content


async def _embedded(embedder: Embedder, got: Any, model: str | None) -> list[list[float]]:
    """Vectors of the records' notes, made anew (in chunks the embedding service takes), all
    by `model`: a chunk another model answered (replicas serving two) stops the re-embed."""
    texts = [
        _embedding_text(i, d, m)
        for i, d, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    ]
    vectors: list[list[float]] = []
    for start in range(0, len(texts), _EMBED_CHUNK):
        reply = await embedder.embed(texts[start : start + _EMBED_CHUNK], background=True)
        if reply.model != model:
            raise Unavailable(
                f"the embedding service answered with {reply.model} as well as {model}: "
                "re-embed once every replica serves one model"
            )
        vectors += reply.vectors
    return vectors


async def rebuild(
    store: NoteStore,
    writer: NoteWriter,
    tenant: str,
    *,
    also_forget: Sequence[NoteStore] = (),
    embedder: Embedder | None = None,
) -> Rebuilt:
    """Replace the tenant's collection by a fresh copy of its records (the module's doc). The
    caller keeps the tenant's evolution paused meanwhile. `store` reads and writes (give it a
    deadline fit for reading every id of a tenant); each of `also_forget` drops its cached
    handle of the tenant's collection at the swap, as `store` does. With an `embedder`, every
    note is embedded again by the model it serves, which the new collection records
    (core/store/models.py); the old one accepts that model's writes meanwhile."""
    started = time.monotonic()
    store.forget(tenant)  # a handle cached before an earlier rebuild would reach the old one
    old = await store.collection(tenant)
    model, _ = store.models.of(old)
    if embedder is not None:
        model = (await embedder.embed(["model probe"], background=True)).model
        await store.models.mark(old, **{models.NEXT_KEY: model})
    try:
        return await _rebuild(store, writer, tenant, old, model, also_forget, embedder, started)
    finally:
        if embedder is not None:
            with contextlib.suppress(Exception):  # the old one is gone after a swap
                await store.models.mark(old, **{models.NEXT_KEY: None})


async def _rebuild(
    store: NoteStore,
    writer: NoteWriter,
    tenant: str,
    old: AsyncCollection,
    model: str | None,
    also_forget: Sequence[NoteStore],
    embedder: Embedder | None,
    started: float,
) -> Rebuilt:
    stamp = utcnow().strftime("%Y%m%dt%H%M%S")
    fresh = await store.create_collection(f"{REBUILD_PREFIX}{tenant}-{stamp}", tenant, model=model)
    since = to_micros(utcnow() - _MARGIN)
    seen: dict[str, object] = {}  # id -> updated_at of the copy made
    copied = await _copy(store, old, fresh, await _all_ids(store, old), seen, embedder, model)
    passes = 1
    for _ in range(_PASSES):
        changed = await _changed_since(store, old, since)
        since = to_micros(utcnow() - _MARGIN)
        again = await _copy(store, old, fresh, changed, seen, embedder, model)
        copied += again
        passes += 1
        if again < _SETTLED:
            break
    async with writer.locked(tenant):
        changed = await _changed_since(store, old, since)
        copied += await _copy(store, old, fresh, changed, seen, embedder, model)
        held, copies = set(await _all_ids(store, old)), set(await _all_ids(store, fresh))
        copied += await _copy(store, old, fresh, held - copies, seen, embedder, model)
        gone = list(copies - held)
        if gone:
            async with store.call("delete"):
                await fresh.delete(ids=gone)
        retired = f"{REBUILD_PREFIX}{tenant}-{stamp}-old"
        async with store.call("modify"):
            await old.modify(name=retired)
        try:
            await _claim_name(store, tenant, fresh, seen)
        except BaseException:
            # The tenant keeps its old collection (and index) rather than none at all.
            log.exception("rebuild could not swap in the new collection; keeping the old one")
            await _claim_name(store, tenant, old, {})
            raise
        for cached in (store, *also_forget):
            cached.forget(tenant)
        # What a gateway wrote through its old handle while the names moved. Until this is
        # copied the old collection holds writes the new one lacks: a failure here leaves it
        # in place (named ...-old), for `amem doctor` to report.
        late = await _changed_since(store, old, since)
        copied += await _copy(store, old, fresh, late, seen, embedder, model)
        client = await store.client()
        async with store.call("delete_collection"):
            await client.delete_collection(retired)
        async with store.call("count"):
            notes = await fresh.count()
    seconds = time.monotonic() - started
    log.info(
        "tenant collection rebuilt",
        extra={"tenant": tenant, "notes": notes, "copied": copied, "seconds": round(seconds, 1)},
    )
    return Rebuilt(tenant, notes, copied, passes + 1, seconds)


async def _claim_name(
    store: NoteStore, tenant: str, target: AsyncCollection, seen: dict[str, object]
) -> None:
    """Give `target` the tenant's name. A client that opened the tenant in the moment it had
    no collection created an empty one under the name (a squatter): rename it away, take the
    name, then fold whatever reached the squatter into `target` and delete it. A write that
    lands in the squatter after that finds, as every gateway write checks, that its
    collection lost the name, and is written again to `target` (NoteStore.put)."""
    name = store.collection_name(tenant)
    client = await store.client()
    squatters: list[str] = []
    for attempt in range(10):
        try:
            async with store.call("modify"):
                await target.modify(name=name)
            break
        except InvalidArgument as refused:  # the name is taken, or something else is wrong
            try:
                async with store.call("get_collection"):
                    squatter = await client.get_collection(name)
            except Unavailable:
                raise refused from None  # not taken: the refusal was about something else
            log.warning("a client re-created the tenant's collection mid-swap; folding it in")
            away = f"{REBUILD_PREFIX}{tenant}-squatter-{attempt}-{uuid.uuid4().hex[:8]}"
            async with store.call("modify"):
                await squatter.modify(name=away)
            squatters.append(away)
    else:
        raise RuntimeError(f"could not give the rebuilt collection the name {name!r}")
    for away in squatters:
        async with store.call("get_collection"):
            squatter = await client.get_collection(away)
        await _copy(store, squatter, target, await _all_ids(store, squatter), seen)
        async with store.call("delete_collection"):
            await client.delete_collection(away)
