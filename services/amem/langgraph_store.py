"""amem as a LangGraph store: `AmemStore`, a `langgraph.store.base.BaseStore` over the REST API
(`pip install 'amem[langgraph]'`), so LangGraph agents and LangMem's memory tools keep their
memories in amem, where they are enriched, linked and evolved like any other.

    from amem.langgraph_store import AmemStore

    store = AmemStore()  # AMEM_URL, AMEM_API_KEY
    store.put(("memories", "ana"), "tea", {"content": "Ana prefers green tea"})
    store.search(("memories", "ana"), query="what does Ana drink?")

How items map onto memories (every item is one memory of the API key's tenant):

- **namespace**: the memory's `user_id` is the namespace's labels joined with "/" (a "/" or
  "\\" inside a label is escaped with "\\"; a namespace longer than 128 characters is named by
  its hash), and its `agent_id` is `langgraph`. So a namespace is a user as far as amem's
  filters, erasure (`DELETE /v1/memories?user_id=...`) and evolution's scoping go: items of
  one namespace are linked and evolved among themselves.
- **key**: the memory's id is derived from the namespace and the key (a UUID 5), so `get`,
  `put` and `delete` address it directly; the namespace and key are also kept in the
  memory's metadata (`langgraph_namespace`, `langgraph_key`).
- **value**: a value with a string `content` (LangMem's shape, `{"content": ...}`) is stored
  with that text as the memory's content and the rest of the value (at most 1,000 characters
  as JSON) in metadata; any other value is stored as its JSON text. Values round-trip exactly.
- **search**: with a `query`, amem's search (hybrid by default) ranks the items, and `score`
  is its rank score (higher is better); without, the items in the order they were stored.
  The namespace the prefix names is searched on the server (its `user_id`); the namespaces
  below it, which LangGraph's prefixes reach too, by a second search over every item (the
  best 100 with a query, the first `scan` without), kept here when they fall under the
  prefix. Ranks
  of the two searches are merged by score. `filter` conditions on value fields ($eq, $ne,
  $gt, $gte, $lt, $lte) are applied here, over what those searches return.
- `list_namespaces` reads every item's namespace (every memory with agent_id `langgraph`).
- Limits: a namespace (as JSON) and a key of at most 1,000 characters, and a value whose text
  fits a memory (16,000 characters); more is refused (`amem.InvalidArgument`).
- `index=False` and the store's `index` settings do not apply: amem embeds every memory.
  Time-to-live is not supported (`supports_ttl` is False, as the base class requires).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    validate_op_namespace,
)

from amem.client import AsyncClient, Client
from amem.core.errors import Conflict, NotFound
from amem.schemas import MemoryPublic

AGENT = "langgraph"
_IDS = uuid.UUID("0d6a3f55-6a2b-4b8e-bb0e-4f4a56c8f2f1")
_WHOLE = "$"  # metadata marker: the content is the whole value, as JSON
_MAX_REST = 1_000


def namespace_user(namespace: tuple[str, ...]) -> str:
    """The `user_id` a namespace maps to."""
    joined = "/".join(label.replace("\\", "\\\\").replace("/", "\\/") for label in namespace)
    if len(joined) <= 128:
        return joined
    return "ns-sha256-" + hashlib.sha256(joined.encode()).hexdigest()


def item_id(namespace: tuple[str, ...], key: str) -> str:
    """The memory id of the item `key` in `namespace`."""
    return str(uuid.uuid5(_IDS, json.dumps([list(namespace), key])))


def _encode(namespace: tuple[str, ...], key: str, value: dict[str, Any]) -> dict[str, Any]:
    """The create body of an item."""
    rest = {k: v for k, v in value.items() if k != "content"}
    text = value.get("content")
    rest_json = json.dumps(rest, separators=(",", ":"), sort_keys=True)
    metadata: dict[str, Any] = {
        "langgraph_namespace": json.dumps(list(namespace)),
        "langgraph_key": key,
    }
    if isinstance(text, str) and text.strip() and len(rest_json) <= _MAX_REST:
        content, metadata["langgraph_value"] = text, rest_json
    else:
        content = json.dumps(value, separators=(",", ":"), sort_keys=True)
        metadata["langgraph_value"] = _WHOLE
    return {
        "content": content,
        "user_id": namespace_user(namespace),
        "agent_id": AGENT,
        "metadata": metadata,
    }


def _is_item(memory: MemoryPublic) -> bool:
    return memory.agent_id == AGENT and "langgraph_key" in memory.metadata


def _namespace(memory: MemoryPublic) -> tuple[str, ...]:
    return tuple(json.loads(str(memory.metadata["langgraph_namespace"])))


def _value(memory: MemoryPublic) -> dict[str, Any]:
    stored = memory.metadata.get("langgraph_value")
    if stored == _WHOLE:
        return json.loads(memory.content)
    return {"content": memory.content, **json.loads(str(stored or "{}"))}


def _item(memory: MemoryPublic, score: float | None = None, search: bool = False):
    fields = {
        "value": _value(memory),
        "key": str(memory.metadata["langgraph_key"]),
        "namespace": _namespace(memory),
        "created_at": memory.created_at,
        "updated_at": memory.updated_at,
    }
    return SearchItem(**fields, score=score) if search else Item(**fields)


_COMPARE = {
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: a is not None and float(a) > float(b),
    "$gte": lambda a, b: a is not None and float(a) >= float(b),
    "$lt": lambda a, b: a is not None and float(a) < float(b),
    "$lte": lambda a, b: a is not None and float(a) <= float(b),
}


def _matches(value: dict[str, Any], conditions: dict[str, Any] | None) -> bool:
    for name, wanted in (conditions or {}).items():
        have = value.get(name)
        if isinstance(wanted, dict) and wanted and all(k.startswith("$") for k in wanted):
            for op, operand in wanted.items():
                if op not in _COMPARE:
                    raise ValueError(f"unsupported filter operator {op!r}")
                if not _COMPARE[op](have, operand):
                    return False
        elif have != wanted:
            return False
    return True


def _under(namespace: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
    return namespace[: len(prefix)] == tuple(prefix)


def _matches_namespace(namespace: tuple[str, ...], op: ListNamespacesOp) -> bool:
    for condition in op.match_conditions or ():
        path = tuple(condition.path)
        if not path:
            continue
        if len(path) > len(namespace):
            return False
        part = (
            namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
        )
        if any(p != "*" and p != n for p, n in zip(path, part, strict=True)):
            return False
    return True


def _namespaces(memories: Iterable[MemoryPublic], op: ListNamespacesOp) -> list[tuple[str, ...]]:
    found = {
        ns[: op.max_depth] if op.max_depth is not None else ns
        for ns in (_namespace(m) for m in memories if _is_item(m))
        if _matches_namespace(ns, op)
    }
    return sorted(found)[op.offset : op.offset + op.limit]


class AmemStore(BaseStore):
    """A LangGraph store kept in amem (see the module's doc for the mapping). `client` and
    `async_client` default to ones configured by AMEM_URL and AMEM_API_KEY; `scan` bounds the
    memories read for filters and namespace prefixes the server cannot apply."""

    supports_ttl = False

    def __init__(
        self,
        client: Client | None = None,
        async_client: AsyncClient | None = None,
        *,
        scan: int = 1_000,
    ) -> None:
        self._client = client
        self._async_client = async_client
        self._scan = scan

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client()
        return self._client

    @property
    def async_client(self) -> AsyncClient:
        if self._async_client is None:
            self._async_client = AsyncClient()
        return self._async_client

    # --- sync -------------------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            validate_op_namespace(op)  # ops handed to batch skip the base class's check
        return [self._run(op) for op in ops]

    def _run(self, op: Op) -> Result:
        c = self.client
        if isinstance(op, GetOp):
            try:
                memory = c.get(item_id(op.namespace, op.key))
            except NotFound:
                return None
            return _item(memory) if _is_item(memory) else None
        if isinstance(op, PutOp):
            return self._put(op)
        if isinstance(op, SearchOp):
            return self._search(op)
        if isinstance(op, ListNamespacesOp):
            return _namespaces(c.list(agent_id=AGENT), op)
        raise ValueError(f"unknown operation {op!r}")

    def _put(self, op: PutOp) -> None:
        c, memory_id = self.client, item_id(op.namespace, op.key)
        if op.value is None:
            try:
                c.delete(memory_id)
            except NotFound:
                pass
            return
        body = _encode(op.namespace, op.key, dict(op.value))
        try:
            c.add(**body, id=memory_id)
        except Conflict:  # it exists: the value changes in place
            c.update(memory_id, content=body["content"], metadata=body["metadata"])

    def _search(self, op: SearchOp) -> list[SearchItem]:
        c, found = self.client, []
        for user, k in _scopes(op, self._scan):
            if op.query:
                hits = c.search(op.query, k=k, user_id=user, agent_id=AGENT).results
                found.append([(h.memory, h.score) for h in hits])
            else:
                found.append([(m, None) for m in _first(c.list(user_id=user, agent_id=AGENT), k)])
        return _page(found, op)

    # --- async ------------------------------------------------------------------------------

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            validate_op_namespace(op)
        return [await self._arun(op) for op in ops]

    async def _arun(self, op: Op) -> Result:
        c = self.async_client
        if isinstance(op, GetOp):
            try:
                memory = await c.get(item_id(op.namespace, op.key))
            except NotFound:
                return None
            return _item(memory) if _is_item(memory) else None
        if isinstance(op, PutOp):
            memory_id = item_id(op.namespace, op.key)
            if op.value is None:
                try:
                    await c.delete(memory_id)
                except NotFound:
                    pass
                return None
            body = _encode(op.namespace, op.key, dict(op.value))
            try:
                await c.add(**body, id=memory_id)
            except Conflict:
                await c.update(memory_id, content=body["content"], metadata=body["metadata"])
            return None
        if isinstance(op, SearchOp):
            found = []
            for user, k in _scopes(op, self._scan):
                if op.query:
                    hits = (await c.search(op.query, k=k, user_id=user, agent_id=AGENT)).results
                    found.append([(h.memory, h.score) for h in hits])
                else:
                    listed = []
                    async for memory in c.list(user_id=user, agent_id=AGENT):
                        listed.append((memory, None))
                        if len(listed) >= k:
                            break
                    found.append(listed)
            return _page(found, op)
        if isinstance(op, ListNamespacesOp):
            return _namespaces([m async for m in c.list(agent_id=AGENT)], op)
        raise ValueError(f"unknown operation {op!r}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        if self._async_client is not None:
            await self._async_client.aclose()


def _scopes(op: SearchOp, scan: int) -> list[tuple[str | None, int]]:
    """The searches a SearchOp takes, as (user_id filter, results wanted): the namespace named
    by the prefix itself, filtered on the server; then the items of every namespace (up to
    `scan`), of which those below the prefix are kept (LangGraph's prefixes reach
    descendants, which no server-side filter can select)."""
    wanted = op.offset + op.limit
    cap = 100 if op.query else scan  # a search answers at most max_k; a listing pages on
    wide = (None, min(cap, max(wanted, scan)))
    if not op.namespace_prefix:
        return [wide]
    exact_k = min(cap, wanted if not op.filter else max(wanted, scan))
    return [(namespace_user(tuple(op.namespace_prefix)), exact_k), wide]


def _first(memories: Iterable[MemoryPublic], n: int) -> list[MemoryPublic]:
    taken = []
    for memory in memories:
        taken.append(memory)
        if len(taken) >= n:
            break
    return taken


def _page(found: list[list[tuple[MemoryPublic, float | None]]], op: SearchOp) -> list[SearchItem]:
    """One page of the items found by the searches of `_scopes`: those under the prefix and
    meeting the filter, each once, best score first (stored order without a query)."""
    seen: dict[str, tuple[MemoryPublic, float | None]] = {}
    for results in found:
        for memory, score in results:
            seen.setdefault(memory.id, (memory, score))
    if op.query:
        ranked = sorted(seen.values(), key=lambda ms: -(ms[1] or 0.0))
    else:
        ranked = sorted(seen.values(), key=lambda ms: ms[0].created_at)
    kept = [
        _item(memory, score, search=True)
        for memory, score in ranked
        if _is_item(memory)
        and _under(_namespace(memory), tuple(op.namespace_prefix))
        and _matches(_value(memory), op.filter)
    ]
    return kept[op.offset : op.offset + op.limit]


__all__ = ["AmemStore", "item_id", "namespace_user"]
