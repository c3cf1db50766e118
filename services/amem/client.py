"""The Python SDK: `Client` and `AsyncClient`, one method per REST operation.

    from amem import Client

    with Client() as memory:  # AMEM_URL (else http://127.0.0.1:8080) and AMEM_API_KEY
        note = memory.add("The deploy key rotates every Monday", user_id="ana")
        for hit in memory.search("when do keys rotate?", user_id="ana").results:
            print(hit.score, hit.memory.content)

Requests and responses are the gateway's own models (amem.schemas), so the SDK cannot drift
from the API. Every error is the taxonomy's class for its code (amem.core.errors: NotFound,
InvalidArgument, RateLimited with `retry_after`, ...). Calls are retried, at most
`max_retries` times, when that is safe: 429 and 503 after their Retry-After (capped), and a
lost connection with exponential backoff, for the calls that can be repeated (reads, searches,
PATCH without If-Match, and creates, which carry an Idempotency-Key the server deduplicates
on, one per call, the same on each attempt); a 503 is retried only for those, a 429 for any.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from amem.core.errors import AmemError, InvalidArgument, by_code
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
    MemoryBatchWritten,
    MemoryCreate,
    MemoryPage,
    MemoryPublic,
    MemoryUpdate,
    MemoryWritten,
    SearchFilters,
    SearchMode,
    SearchRequest,
    SearchResponse,
    Usage,
)

DEFAULT_URL = "http://127.0.0.1:8080"
_M = TypeVar("_M", bound=BaseModel)
# Waits a retry may take at most, whatever Retry-After says.
_MAX_RETRY_WAIT_S = 30.0


@dataclass
class _Call:
    """One REST call, described once for both clients."""

    method: str
    path: str
    model: Any  # what the response body parses into (a model, or a TypeAdapter target)
    json: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    # May the call be sent again after a lost connection or a 503 (it does nothing twice)?
    repeatable: bool = True
    # Seconds to wait for the answer, when the call itself waits on the server (`wait`).
    timeout: float | None = None


def _error(response: httpx.Response) -> AmemError:
    """The taxonomy's exception for an error response."""
    try:
        body = response.json()
        code, message = body["error"], body["message"]
    except (ValueError, KeyError, TypeError):
        code, message = "", response.text[:500] or response.reason_phrase
    retry_after = None
    if value := response.headers.get("retry-after"):
        try:
            retry_after = float(value)
        except ValueError:
            retry_after = None
    cls = by_code(code) if code else None
    if cls is None or cls.http_status != response.status_code:
        exc = AmemError(message or f"HTTP {response.status_code}", retry_after=retry_after)
        exc.code, exc.http_status = code or "error", response.status_code
        return exc
    return cls(message, retry_after=retry_after)


def _parse(call: _Call, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise _error(response)
    if call.model is None:
        return None
    return TypeAdapter(call.model).validate_json(response.content)


def _retry_wait(attempt: int, response: httpx.Response | None, call: _Call) -> float | None:
    """Seconds before the next attempt, or None when the outcome is final. A 429 comes before
    the call did anything; a 503 may come after a change landed (a deadline that ran out on
    the tenant's writer), so only a repeatable call is sent again after one."""
    if response is not None:
        if response.status_code != 429 and not (response.status_code == 503 and call.repeatable):
            return None
        if value := response.headers.get("retry-after"):
            try:
                return min(float(value), _MAX_RETRY_WAIT_S)
            except ValueError:
                pass
    return min(0.5 * 2**attempt, _MAX_RETRY_WAIT_S) * (0.5 + random.random() / 2)  # noqa: S311


def _filters(
    user_id: str | None,
    agent_id: str | None,
    tag: str | None,
    category: str | None,
    since: datetime | str | None,
    until: datetime | str | None,
) -> dict[str, Any]:
    values = {
        "user_id": user_id,
        "agent_id": agent_id,
        "tag": tag,
        "category": category,
        "since": since.isoformat() if isinstance(since, datetime) else since,
        "until": until.isoformat() if isinstance(until, datetime) else until,
    }
    return {k: v for k, v in values.items() if v is not None}


def _list_params(
    user_id: str | None,
    agent_id: str | None,
    tag: str | None,
    category: str | None,
    status: EvolutionStatus | str | None,
    since: datetime | str | None,
    until: datetime | str | None,
    limit: int,
) -> dict[str, Any]:
    params: dict[str, Any] = _filters(user_id, agent_id, tag, category, since, until)
    if status is not None:
        params["status"] = str(status)
    params["limit"] = limit
    return params


def _seg(value: str) -> str:
    """`value` as one URL path segment: percent-encoded, and refused when the server could
    only read it as more than one (a "/" is decoded before routing) or as "." or ".."."""
    if not value or "/" in value or value in (".", ".."):
        raise InvalidArgument(f"not an id: {value!r}")
    return quote(value, safe="")


def _etag(version: int | None) -> dict[str, str]:
    return {"If-Match": f'"{version}"'} if version is not None else {}


def _body(model: BaseModel) -> Any:
    return model.model_dump(mode="json", exclude_unset=True)


class _Calls:
    """The REST operations as `_Call`s; the clients send them."""

    @staticmethod
    def add(
        body: MemoryCreate | MemoryBatchCreate, wait: bool, timeout: float | None, key: str | None
    ) -> _Call:
        """A create (one memory, or a batch), keyed so that a retry writes nothing twice."""
        params = {"wait": "true"} if wait else {}
        if wait and timeout is not None:
            params["timeout"] = str(timeout)
        batch = isinstance(body, MemoryBatchCreate)
        return _Call(
            "POST",
            "/v1/memories/batch" if batch else "/v1/memories",
            MemoryBatchWritten if batch else MemoryWritten,
            json=_body(body),
            params=params,
            headers={"Idempotency-Key": key or str(uuid.uuid4())},
            # The server waits up to `timeout` (30 s by default) before it answers.
            timeout=(timeout or 30.0) + 30.0 if wait else None,
        )

    @staticmethod
    def update(memory_id: str, change: MemoryUpdate, if_match: int | None) -> _Call:
        return _Call(
            "PATCH",
            f"/v1/memories/{_seg(memory_id)}",
            MemoryWritten,
            json=_body(change),
            headers=_etag(if_match),
            repeatable=if_match is None,  # a repeat of a change that landed would get 412
        )

    @staticmethod
    def search(request: SearchRequest) -> _Call:
        return _Call("POST", "/v1/memories/search", SearchResponse, json=_body(request))


def _valid(model: type[_M], data: Any) -> _M:
    """`data` as `model`; the SDK's own InvalidArgument, naming the field, when it is not."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidArgument(f"{where}: {first['msg']}") from exc


def _memory_create(content: str, arguments: Mapping[str, Any]) -> MemoryCreate:
    """The MemoryCreate of an `add` call's arguments (those that are the model's fields)."""
    given = {
        name: arguments[name]
        for name in MemoryCreate.model_fields
        if name != "content" and arguments.get(name) is not None
    }
    return _valid(MemoryCreate, {"content": content, **given})


def _search_request(query: str, k: int, mode: SearchMode | str, include_links: bool, flt: dict):
    return _valid(
        SearchRequest,
        {
            "query": query,
            "k": k,
            "mode": mode,
            "include_links": include_links,
            "filters": _valid(SearchFilters, flt).model_dump(exclude_none=True),
        },
    )


class _Config:
    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        timeout: float,
        max_retries: int,
    ) -> None:
        self.base_url = (base_url or os.environ.get("AMEM_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("AMEM_API_KEY")
        self.timeout = timeout
        self.max_retries = max_retries

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": "amem-python"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers


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
