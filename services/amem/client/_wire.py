"""What both clients share: each REST call described once (`_Call`, `_Calls`), its arguments
validated into the gateway's models, the response parsed or raised as the taxonomy's error, and
when to retry."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from amem.core.errors import AmemError, InvalidArgument, by_code
from amem.core.model import EvolutionStatus
from amem.schemas import (
    MemoryBatchCreate,
    MemoryBatchWritten,
    MemoryCreate,
    MemoryUpdate,
    MemoryWritten,
    SearchFilters,
    SearchMode,
    SearchRequest,
    SearchResponse,
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
