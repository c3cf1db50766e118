"""Which embedding model wrote a tenant collection's vectors, and the check that keeps vectors
of another model out of it.

Vectors of two models are not comparable: a query embedded by one finds nonsense among notes
embedded by another, and says nothing. So each tenant collection records its model in its
metadata (`amem_model`), and a store that knows which model the embedding service serves (the
model of its latest answer) refuses, with 503 and the way out, to write or search that
collection with another model's vectors. A collection made before models were recorded takes
the model serving when it is first written or searched (upgrade amem before changing models).

The model checked is that of the embedding client's latest answer, not carried with each
vector: roll a new model out to every embedding replica at once (not replica by replica),
since while two models answer side by side a vector of one may be checked as the other's.

Changing the model is a re-embed of each tenant (`amem reindex --tenant T --re-embed`,
core/repair.py): the collection is rebuilt with vectors of the model now serving. While that
runs the old collection also names the new model (`amem_model_next`): writes embedded by it are
accepted (the rebuild re-embeds them anyway), searches are refused until the swap.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from chromadb.api import AsyncClientAPI
from chromadb.api.models.AsyncCollection import AsyncCollection

from amem.core.errors import Unavailable
from amem.core.store.transport import CollectionGone

MODEL_KEY = "amem_model"
NEXT_KEY = "amem_model_next"

Call = Callable[[str], AbstractAsyncContextManager[None]]


Meta = dict[str, Any]


def recorded(meta: Meta) -> tuple[str | None, str | None]:
    """A collection's model, and the model a re-embed is moving it to (or None)."""
    return meta.get(MODEL_KEY), meta.get(NEXT_KEY)


async def mark(call: Call, col: AsyncCollection, meta: Meta, **fields: str | None) -> Meta:
    """Set (or, with None, remove) model keys of the collection's metadata `meta`, keeping the
    rest; returns the metadata now stored."""
    updated = {k: v for k, v in meta.items() if k not in fields}
    updated.update({k: v for k, v in fields.items() if v is not None})
    async with call("modify"):
        await col.modify(metadata=updated)
    return updated


async def check(
    call: Call,
    client: AsyncClientAPI,
    tenant: str,
    col: AsyncCollection,
    meta: Meta,
    serving: str | None,
    *,
    writing: bool,
) -> Meta:
    """Refuse vectors of `serving` for `col` (its metadata as last known: `meta`) unless it
    records that model (or, for a write, is being re-embedded to it); returns the metadata as
    now known. A collection that records none adopts `serving`. The stored metadata is read
    again before refusing: a re-embed may have begun since `meta` was read."""
    if serving is None:
        return meta  # no vector seen yet: nothing to check against
    model, _ = recorded(meta)
    if model is None:
        return await mark(call, col, meta, **{MODEL_KEY: serving})
    if serving == model:
        return meta
    # Read again: a re-embed may have begun (or ended, or failed) since `meta` was read, and
    # whether it is moving to `serving` is never taken from a cached copy.
    async with call("get_collection"):
        stored = await client.get_collection(col.name)
    if stored.id != col.id:
        raise CollectionGone(f"the collection of tenant {tenant!r} was replaced")
    meta = dict(stored.metadata or {})
    model, moving_to = recorded(meta)
    if serving == model or (writing and serving == moving_to):
        return meta
    if serving == moving_to:
        raise Unavailable(
            f"tenant {tenant!r} is being re-embedded with {serving}: search it again when that "
            f"finishes (if no re-embed is running, run amem reindex --tenant {tenant} "
            "--re-embed again)",
            retry_after=30,
        )
    raise Unavailable(
        f"tenant {tenant!r}'s memories were embedded with {model}, and the embedding service "
        f"serves {serving}: re-embed the tenant (amem reindex --tenant {tenant} --re-embed) or "
        f"serve {model} again (docs/operations.md, Changing the embedding model)",
        retry_after=None,
    )


class ModelRecords:
    """A store's view of its collections' records, as it last read or wrote them (by
    collection id), and the check of each vector it is given against them."""

    def __init__(self, call: Call, serving: Callable[[], str | None]) -> None:
        self._call = call
        self._serving = serving
        self._meta: dict[Any, Meta] = {}

    def _known(self, col: AsyncCollection) -> Meta:
        return self._meta.get(col.id) or dict(col.metadata or {})

    def of(self, col: AsyncCollection) -> tuple[str | None, str | None]:
        """The model the collection records, and the one a re-embed moves it to."""
        return recorded(self._known(col))

    async def mark(self, col: AsyncCollection, **fields: str | None) -> None:
        self._meta[col.id] = await mark(self._call, col, self._known(col), **fields)

    async def check(
        self, client: AsyncClientAPI, tenant: str, col: AsyncCollection, *, writing: bool
    ) -> None:
        serving = self._serving()
        known = self._known(col)
        self._meta[col.id] = await check(
            self._call, client, tenant, col, known, serving, writing=writing
        )
