"""The MCP server, driven by the official `mcp` client: over Streamable HTTP at the session
stack's gateway (`/mcp`), and over stdio against `amem mcp`, which proxies to that gateway."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import KEY_A, KEY_B

TOOLS = {
    "add_memory",
    "search_memory",
    "get_memory",
    "update_memory",
    "delete_memory",
    "list_memories",
    "get_links",
    "get_history",
    "revert_history_entry",
}


async def _over_http(url: str, key: str, work: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
        )
        read, write, *_ = await stack.enter_async_context(
            streamable_http_client(f"{url}/mcp", http_client=http)
        )
        session = await stack.enter_async_context(ClientSession(read, write))
        await session.initialize()
        return await work(session)


def _http(stack, key: str, work: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    return asyncio.run(_over_http(stack.gateway_url, key, work))


async def _call(session: ClientSession, tool: str, **arguments: Any) -> dict:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content


def test_every_tool_is_listed_with_a_description_and_bounded_schemas(stack):
    tools = _http(stack, KEY_A, lambda s: s.list_tools())
    by_name = {t.name: t for t in tools.tools}
    assert set(by_name) == TOOLS
    for tool in by_name.values():
        assert tool.description and len(tool.description) > 30, tool.name
        assert tool.output_schema, tool.name
        for name, prop in tool.input_schema["properties"].items():
            schema = json.dumps(prop)
            if '"type": "string"' in schema and name not in ("mode", "status"):
                assert "maxLength" in schema, (tool.name, name)
    assert "tenant" not in json.dumps([t.input_schema for t in tools.tools])
    search = by_name["search_memory"].input_schema["properties"]
    assert search["k"]["maximum"] == 100


def test_every_tool_works_over_http(stack, user_id):
    async def scenario(s: ClientSession) -> None:
        first = await _call(s, "add_memory", content="Ana's cat is called Miso", user_id=user_id)
        second = await _call(
            s, "add_memory", content="Miso likes tuna", user_id=user_id, links=[first["id"]]
        )
        got = await _call(s, "get_memory", memory_id=first["id"])
        assert got["content"] == "Ana's cat is called Miso" and got["user_id"] == user_id
        changed = await _call(
            s, "update_memory", memory_id=first["id"], tags=["pets"], if_version=got["version"]
        )
        assert changed["tags"] == ["pets"] and changed["version"] == got["version"] + 1
        found = await _call(s, "search_memory", query="what is the cat called?", user_id=user_id)
        assert found["results"][0]["memory"]["id"] in (first["id"], second["id"])
        page = await _call(s, "list_memories", user_id=user_id, limit=1)
        assert [m["id"] for m in page["memories"]] == [first["id"]] and page["next_cursor"]
        rest = await _call(s, "list_memories", user_id=user_id, limit=1, cursor=page["next_cursor"])
        assert [m["id"] for m in rest["memories"]] == [second["id"]]
        links = await _call(s, "get_links", memory_id=second["id"])
        assert {m["memory"]["id"] for m in links["memories"]} == {first["id"], second["id"]}
        history = await _call(s, "get_history", memory_id=first["id"])
        assert history == {"memory_id": first["id"], "entries": []}
        receipt = await _call(s, "delete_memory", memory_id=first["id"])
        assert receipt["erased"] == [first["id"]] and receipt["unlinked"] == [second["id"]]
        # Errors are tool errors with the REST API's code.
        missing = await s.call_tool("get_memory", {"memory_id": first["id"]})
        assert missing.is_error and missing.structured_content["error"]["code"] == "not_found"
        stale = await s.call_tool(
            "update_memory", {"memory_id": second["id"], "tags": ["x"], "if_version": 99}
        )
        assert stale.structured_content["error"]["code"] == "precondition_failed"
        revert = await s.call_tool(
            "revert_history_entry", {"memory_id": second["id"], "entry_id": "no-such-entry"}
        )
        assert revert.is_error  # no evolution service on this stack: 503, not a crash
        bad = await s.call_tool("search_memory", {"query": "x", "k": 1000})
        assert bad.is_error  # out of the schema's bounds

    _http(stack, KEY_A, scenario)


def test_no_key_is_401_at_the_http_layer_and_tenants_stay_apart(stack, user_id):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    for auth in ({}, {"Authorization": "Bearer not-a-key"}):
        r = httpx.post(f"{stack.gateway_url}/mcp", json=body, headers={**headers, **auth})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == "unauthenticated"

    async def add(s: ClientSession) -> dict:
        return await _call(s, "add_memory", content="tenant A's secret plan", user_id=user_id)

    note = _http(stack, KEY_A, add)

    async def peek(s: ClientSession) -> tuple[Any, Any]:
        got = await s.call_tool("get_memory", {"memory_id": note["id"]})
        found = await _call(s, "search_memory", query="secret plan", user_id=user_id)
        return got, found

    got, found = _http(stack, KEY_B, peek)
    assert got.is_error and got.structured_content["error"]["code"] == "not_found"
    assert found["results"] == []


def test_the_stdio_server_proxies_to_the_gateway(stack, user_id):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "amem", "mcp"],
        env={**os.environ, "AMEM_URL": stack.gateway_url, "AMEM_API_KEY": KEY_A},
    )

    async def scenario() -> tuple[set[str], dict, dict]:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            tools = {t.name for t in (await s.list_tools()).tools}
            note = await _call(
                s, "add_memory", content="Over stdio: Bo plays chess", user_id=user_id
            )
            found = await _call(s, "search_memory", query="who plays chess", user_id=user_id, k=1)
            return tools, note, found

    tools, note, found = asyncio.run(scenario())
    assert tools == TOOLS
    assert found["results"][0]["memory"]["id"] == note["id"]
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {KEY_A}"}
    ) as c:
        assert c.get(f"/v1/memories/{note['id']}").json()["content"] == note["content"]
