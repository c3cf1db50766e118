"""`AsyncClient`: the REST API, for asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
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


class AsyncClient:
    """The REST API, for asyncio. Use as an async context manager, or call `aclose()`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = _Config(base_url, api_key, timeout, max_retries)
        self._http = http_client or httpx.AsyncClient(
            base_url=self._config.base_url, headers=self._config.headers(), timeout=timeout
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: _Call) -> Any:
        for attempt in range(self._config.max_retries + 1):
            last = attempt == self._config.max_retries
            try:
                response = await self._http.request(
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
                await asyncio.sleep(_retry_wait(attempt, None, call) or 0)
                continue
            wait = _retry_wait(attempt, response, call)
            if wait is None or last:
                return _parse(call, response)
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def add(
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
        return await self._send(_Calls.add(memory, wait, wait_timeout, idempotency_key))

    async def add_batch(
        self,
        memories: Sequence[MemoryCreate | Mapping[str, Any]],
        *,
        conversation: bool = False,
        wait: bool = False,
        wait_timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> list[MemoryWritten]:
        batch = _valid(
            MemoryBatchCreate, {"memories": list(memories), "conversation": conversation}
        )
        call = _Calls.add(batch, wait, wait_timeout, idempotency_key)
        return (await self._send(call)).memories

    async def get(self, memory_id: str) -> MemoryPublic:
        return await self._send(_Call("GET", f"/v1/memories/{_seg(memory_id)}", MemoryPublic))

    async def update(
        self, memory_id: str, *, if_version: int | None = None, **fields: Any
    ) -> MemoryWritten:
        change = _valid(MemoryUpdate, fields)
        return await self._send(_Calls.update(memory_id, change, if_version))

    async def delete(self, memory_id: str, *, if_version: int | None = None) -> ErasureReceipt:
        headers = _etag(if_version)
        call = _Call("DELETE", f"/v1/memories/{_seg(memory_id)}", ErasureReceipt, headers=headers)
        call.repeatable = False
        return await self._send(call)

    async def erase(
        self, *, user_id: str | None = None, agent_id: str | None = None
    ) -> EraseResponse:
        params = {k: v for k, v in {"user_id": user_id, "agent_id": agent_id}.items() if v}
        return await self._send(_Call("DELETE", "/v1/memories", EraseResponse, params=params))

    async def list(
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
    ) -> AsyncIterator[MemoryPublic]:
        params = _list_params(user_id, agent_id, tag, category, status, since, until, page_size)
        while True:
            call = _Call("GET", "/v1/memories", MemoryPage, params=params)
            page: MemoryPage = await self._send(call)
            for memory in page.memories:
                yield memory
            if page.next_cursor is None:
                return
            params = {**params, "cursor": page.next_cursor}

    async def page(
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
        params = _list_params(user_id, agent_id, tag, category, status, since, until, limit)
        if cursor:
            params["cursor"] = cursor
        return await self._send(_Call("GET", "/v1/memories", MemoryPage, params=params))

    async def search(
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
        return await self._send(_Calls.search(_search_request(query, k, mode, include_links, flt)))

    async def links(self, memory_id: str, *, depth: int = 1) -> LinksResponse:
        path = f"/v1/memories/{_seg(memory_id)}/links"
        return await self._send(_Call("GET", path, LinksResponse, params={"depth": depth}))

    async def history(self, memory_id: str) -> HistoryResponse:
        path = f"/v1/memories/{_seg(memory_id)}/history"
        return await self._send(_Call("GET", path, HistoryResponse))

    async def revert(self, memory_id: str, entry_id: str) -> MemoryPublic:
        path = f"/v1/memories/{_seg(memory_id)}/history/{_seg(entry_id)}:revert"
        return await self._send(_Call("POST", path, MemoryPublic, repeatable=False))

    async def retry_evolution(self, memory_id: str) -> MemoryPublic:
        path = f"/v1/memories/{_seg(memory_id)}:evolve"
        return await self._send(_Call("POST", path, MemoryPublic, repeatable=False))

    async def usage(self) -> Usage:
        return await self._send(_Call("GET", "/v1/usage", Usage))

    async def create_key(
        self, tenant: str, *, name: str = "", expires_in_s: int | None = None
    ) -> KeyIssued:
        body = {"tenant": tenant, "name": name, "expires_in_s": expires_in_s}
        call = _Call("POST", "/v1/admin/keys", KeyIssued, json=body, repeatable=False)
        return await self._send(call)

    async def list_keys(
        self, *, tenant: str | None = None, include_revoked: bool = False
    ) -> KeyList:
        params: dict[str, Any] = {"include_revoked": str(include_revoked).lower()}
        if tenant:
            params["tenant"] = tenant
        return await self._send(_Call("GET", "/v1/admin/keys", KeyList, params=params))

    async def rotate_key(self, key_id: str, *, grace_s: int = 3600) -> KeyIssued:
        path, body = f"/v1/admin/keys/{_seg(key_id)}:rotate", {"grace_s": grace_s}
        return await self._send(_Call("POST", path, KeyIssued, json=body, repeatable=False))

    async def revoke_key(self, key_id: str) -> KeyPublic:
        return await self._send(_Call("DELETE", f"/v1/admin/keys/{_seg(key_id)}", KeyPublic))
