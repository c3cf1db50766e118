"""The SDK's evolution-side calls (wait, history, revert, retry) on the evolution stack."""

from __future__ import annotations

import pytest

import amem
from amem import Client
from tests.conftest import KEY_A


def test_history_and_revert_through_the_sdk(evo_stack, user_id):
    with Client(evo_stack.gateway_url, KEY_A) as c:
        note = c.add("Kite festival on the beach in June", user_id=user_id, wait=True)
        assert note.status == "done"
        [entry] = c.history(note.id).entries
        reverted = c.revert(note.id, entry.id)
        assert reverted.context == "" and c.history(note.id).entries[-1].kind == "revert"
        with pytest.raises(amem.Conflict):
            c.revert(note.id, entry.id)
        with pytest.raises(amem.Conflict):
            c.retry_evolution(note.id)  # done already


def test_mcp_add_with_wait_history_and_revert(evo_stack, user_id):
    import asyncio

    from tests.sdk.test_mcp import _call, _over_http

    async def scenario(s):
        note = await _call(
            s, "add_memory", content="Lighthouse tour booked for May", user_id=user_id, wait=True
        )
        assert note["status"] == "done" and note["context"]
        [entry] = (await _call(s, "get_history", memory_id=note["id"]))["entries"]
        reverted = await _call(
            s, "revert_history_entry", memory_id=note["id"], entry_id=entry["id"]
        )
        assert reverted["context"] == ""
        again = await s.call_tool(
            "revert_history_entry", {"memory_id": note["id"], "entry_id": entry["id"]}
        )
        assert again.is_error and again.structured_content["error"]["code"] == "conflict"

    asyncio.run(_over_http(evo_stack.gateway_url, KEY_A, scenario))
