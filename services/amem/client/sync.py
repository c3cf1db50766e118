"""`Client`: the REST API, synchronously."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from amem.client._wire import (
    _Call,
    _Calls,
    _Config,
    _etag,
    _filters,
    _list_params,
    _memory_create,
    _parse,
    _retry_wait,
    _search_request,
    _seg,
    _valid,
)
from amem.core.model import EvolutionStatus
from amem.schemas import (
    EraseResponse,
    ErasureReceipt,
    HistoryResponse,
    KeyIssued,
    KeyList,
    KeyPublic,
    LinksResponse,
    MemoryBatchCreate,
    MemoryCreate,
    MemoryPage,
    MemoryPublic,
    MemoryUpdate,
    MemoryWritten,
    SearchMode,
    SearchResponse,
    Usage,
)


class Client:
    """The REST API, synchronously. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._config = _Config(base_url, api_key, timeout, max_retries)
        self._http = http_client or httpx.Client(
            base_url=self._config.base_url, headers=self._config.headers(), timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: _Call) -> Any:
        for attempt in range(self._config.max_retries + 1):
            last = attempt == self._config.max_retries
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    json=call.json,
                    params=call.params,
                    headers=call.headers,
                    timeout=call.timeout or httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError:
                if last or not call.repeatable:
                    raise
                time.sleep(_retry_wait(attempt, None, call) or 0)
                continue
            wait = _retry_wait(attempt, response, call)
            if wait is None or last:
                return _parse(call, response)
            time.sleep(wait)
        raise AssertionError("unreachable")

    # --- memories -------------------------------------------------------------------------

    def add(
        self,
        content: str,
        *,
        keywords: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        context: str | None = None,
        category: str | None = None,
        timestamp: datetime | str | None = None,
        user_id: str | None = None,
        agent_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        links: Sequence[str] | None = None,
        follows: str | None = None,
        id: str | None = None,  # noqa: A002 (the field's name)
        wait: bool = False,
        wait_timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> MemoryWritten:
        """Store a memory (`wait`: answer once its evolution is done; `id`: one of your
        choosing, which no memory may have yet)."""
        memory = _memory_create(content, locals())
        return self._send(_Calls.add(memory, wait, wait_timeout, idempotency_key))

    def add_batch(
        self,
        memories: Sequence[MemoryCreate | Mapping[str, Any]],
        *,
        conversation: bool = False,
        wait: bool = False,
        wait_timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> list[MemoryWritten]:
        """Store several memories, all or none (`conversation`: each follows the one before)."""
        batch = _valid(
            MemoryBatchCreate, {"memories": list(memories), "conversation": conversation}
        )
        return self._send(_Calls.add(batch, wait, wait_timeout, idempotency_key)).memories

    def get(self, memory_id: str) -> MemoryPublic:
        return self._send(_Call("GET", f"/v1/memories/{_seg(memory_id)}", MemoryPublic))

    def update(
        self, memory_id: str, *, if_version: int | None = None, **fields: Any
    ) -> MemoryWritten:
        """Change some fields (`if_version`: only if the memory is still at that version)."""
        change = _valid(MemoryUpdate, fields)
        return self._send(_Calls.update(memory_id, change, if_version))

    def delete(self, memory_id: str, *, if_version: int | None = None) -> ErasureReceipt:
        """Delete a memory (and what its evolution wrote elsewhere); the erasure receipt."""
        headers = _etag(if_version)
        # Not sent again after a lost connection: a repeat of one that landed answers 404.
        call = _Call("DELETE", f"/v1/memories/{_seg(memory_id)}", ErasureReceipt, headers=headers)
        call.repeatable = False
        return self._send(call)

    def erase(self, *, user_id: str | None = None, agent_id: str | None = None) -> EraseResponse:
        """Delete every memory of a user and/or agent."""
        params = {k: v for k, v in {"user_id": user_id, "agent_id": agent_id}.items() if v}
        return self._send(_Call("DELETE", "/v1/memories", EraseResponse, params=params))

    def list(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        tag: str | None = None,
        category: str | None = None,
        status: EvolutionStatus | str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[MemoryPublic]:
        """Every memory that meets the filters, in insertion order (pages fetched as needed)."""
        params = _list_params(user_id, agent_id, tag, category, status, since, until, page_size)
        while True:
            page: MemoryPage = self._send(_Call("GET", "/v1/memories", MemoryPage, params=params))
            yield from page.memories
            if page.next_cursor is None:
                return
            params = {**params, "cursor": page.next_cursor}

    def page(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        tag: str | None = None,
        category: str | None = None,
        status: EvolutionStatus | str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> MemoryPage:
        """One page of the listing; pass its `next_cursor` back for the next."""
        params = _list_params(user_id, agent_id, tag, category, status, since, until, limit)
        if cursor:
            params["cursor"] = cursor
        return self._send(_Call("GET", "/v1/memories", MemoryPage, params=params))

    def search(
        self,
        query: str,
        *,
        k: int = 10,
        mode: SearchMode | str = SearchMode.HYBRID,
        user_id: str | None = None,
        agent_id: str | None = None,
        tag: str | None = None,
        category: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        include_links: bool = False,
    ) -> SearchResponse:
        flt = _filters(user_id, agent_id, tag, category, since, until)
        return self._send(_Calls.search(_search_request(query, k, mode, include_links, flt)))

    def links(self, memory_id: str, *, depth: int = 1) -> LinksResponse:
        path = f"/v1/memories/{_seg(memory_id)}/links"
        return self._send(_Call("GET", path, LinksResponse, params={"depth": depth}))

    def history(self, memory_id: str) -> HistoryResponse:
        return self._send(_Call("GET", f"/v1/memories/{_seg(memory_id)}/history", HistoryResponse))

    def revert(self, memory_id: str, entry_id: str) -> MemoryPublic:
        path = f"/v1/memories/{_seg(memory_id)}/history/{_seg(entry_id)}:revert"
        return self._send(_Call("POST", path, MemoryPublic, repeatable=False))

    def retry_evolution(self, memory_id: str) -> MemoryPublic:
        path = f"/v1/memories/{_seg(memory_id)}:evolve"
        return self._send(_Call("POST", path, MemoryPublic, repeatable=False))

    def usage(self) -> Usage:
        return self._send(_Call("GET", "/v1/usage", Usage))

    # --- API keys (with an admin key) -----------------------------------------------------

    def create_key(
        self, tenant: str, *, name: str = "", expires_in_s: int | None = None
    ) -> KeyIssued:
        body = {"tenant": tenant, "name": name, "expires_in_s": expires_in_s}
        return self._send(_Call("POST", "/v1/admin/keys", KeyIssued, json=body, repeatable=False))

    def list_keys(self, *, tenant: str | None = None, include_revoked: bool = False) -> KeyList:
        params: dict[str, Any] = {"include_revoked": str(include_revoked).lower()}
        if tenant:
            params["tenant"] = tenant
        return self._send(_Call("GET", "/v1/admin/keys", KeyList, params=params))

    def rotate_key(self, key_id: str, *, grace_s: int = 3600) -> KeyIssued:
        path, body = f"/v1/admin/keys/{_seg(key_id)}:rotate", {"grace_s": grace_s}
        return self._send(_Call("POST", path, KeyIssued, json=body, repeatable=False))

    def revoke_key(self, key_id: str) -> KeyPublic:
        return self._send(_Call("DELETE", f"/v1/admin/keys/{_seg(key_id)}", KeyPublic))
