"""amem's own collections on the tenants' ChromaDB, and the codecs of their records: managed
API keys (`amemsys-api-keys`, one record per key) and LLM tokens per tenant and UTC day
(`amemsys-usage`, record id `<tenant>:<YYYY-MM-DD>`). Named `amemsys-*`, outside the tenants'
`amem-*` namespace; every record's metadata names its `tenant`.

Each collection also says how a restore merges a saved record into the live one
(backup/notes.py): a key is added only where the deployment lacks its id, so a restore never
brings back a key revoked or expired since the backup; a usage counter takes the larger of the
two counts, as counters only grow.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from chromadb.api import AsyncClientAPI
from chromadb.api.models.AsyncCollection import AsyncCollection

from amem.core.store.codec import from_micros, to_micros
from amem.core.store.transport import CollectionGone, chroma_call, connect

log = logging.getLogger(__name__)

Record = dict[str, Any]

API_KEYS_COLLECTION = "amemsys-api-keys"
USAGE_COLLECTION = "amemsys-usage"


@dataclass(frozen=True)
class ManagedKey:
    """A managed API key's record (only the key's hash is stored)."""

    id: str
    tenant: str
    name: str
    hash: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def valid(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def metadata(self) -> Record:
        meta: Record = {
            "tenant": self.tenant,
            "name": self.name,
            "hash": self.hash,
            "created_at": to_micros(self.created_at),
        }
        if self.expires_at:
            meta["expires_at"] = to_micros(self.expires_at)
        if self.revoked_at:
            meta["revoked_at"] = to_micros(self.revoked_at)
        return meta

    @classmethod
    def of(cls, key_id: str, meta: Record) -> ManagedKey:
        return cls(
            id=key_id,
            tenant=meta["tenant"],
            name=meta.get("name", ""),
            hash=meta["hash"],
            created_at=from_micros(meta["created_at"]),
            expires_at=from_micros(meta["expires_at"]) if "expires_at" in meta else None,
            revoked_at=from_micros(meta["revoked_at"]) if "revoked_at" in meta else None,
        )


def usage_id(tenant: str, day: date) -> str:
    return f"{tenant}:{day.isoformat()}"


def usage_record(tenant: str, day: date, tokens: int) -> Record:
    return {"tenant": tenant, "day": day.isoformat(), "llm_tokens": tokens}


def usage_tokens(meta: Record | None) -> int:
    return int((meta or {}).get("llm_tokens", 0))


def _add_missing(live: Record | None, saved: Record) -> Record | None:
    return saved if live is None else None


def _larger_count(live: Record | None, saved: Record) -> Record | None:
    return saved if live is None or usage_tokens(saved) > usage_tokens(live) else None


# Every system collection, with how a restore merges a saved record into the live one (None:
# keep the live record). A backup carries each of them.
RESTORE_MERGE: dict[str, Callable[[Record | None, Record], Record | None]] = {
    API_KEYS_COLLECTION: _add_missing,
    USAGE_COLLECTION: _larger_count,
}


class SystemCollection:
    """A small ChromaDB collection of amem's own records: ids and metadata, a placeholder
    vector each, nothing searched. The collection's handle is kept, and reopened if ChromaDB
    lost the collection (it is created again, empty)."""

    def __init__(self, name: str, host: str, port: int, *, timeout_s: float = 10.0) -> None:
        self._name = name
        self._host, self._port, self._timeout = host, port, timeout_s
        self._client: AsyncClientAPI | None = None
        self._handle: AsyncCollection | None = None

    async def _collection(self) -> AsyncCollection:
        if self._handle is None:
            async with chroma_call("get_or_create_collection", self._timeout, None):
                if self._client is None:
                    self._client = await connect(self._host, self._port)
                self._handle = await self._client.get_or_create_collection(
                    self._name, embedding_function=None
                )
        return self._handle

    async def get(self, ids: Sequence[str] | None = None) -> dict[str, Record]:
        """Metadata by id: of `ids` (those that exist), or of every record."""
        wanted = list(ids) if ids is not None else None
        got = await self._call("get", lambda col: col.get(ids=wanted, include=["metadatas"]))
        return dict(zip(got["ids"], got["metadatas"], strict=True))

    async def put(self, records: dict[str, Record]) -> None:
        await self._call(
            "upsert",
            lambda col: col.upsert(
                ids=list(records),
                embeddings=[[0.0]] * len(records),
                metadatas=list(records.values()),
            ),
        )

    async def _call(self, op: str, use: Callable[[AsyncCollection], Awaitable[Any]]) -> Any:
        """`use` the collection, with a fresh handle once if the kept one is stale."""
        for attempt in (1, 2):
            col = await self._collection()
            try:
                async with chroma_call(op, self._timeout, None):
                    return await use(col)
            except CollectionGone:
                if attempt == 2:
                    raise
                log.warning("system collection %s vanished; reopening it", self._name)
                self._handle = None
