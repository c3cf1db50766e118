"""Concurrent single writes share ChromaDB upserts, and every acknowledged one is stored."""

from __future__ import annotations

import asyncio
import re

import httpx

from tests.conftest import KEY_A


def _commit_counts(api) -> tuple[float, float]:
    """(upserts, notes) made by the gateway's group commit so far."""
    text = api.get("/metrics").text
    count = re.search(r"^amem_gateway_commit_notes_count (\S+)$", text, re.M)
    total = re.search(r"^amem_gateway_commit_notes_sum (\S+)$", text, re.M)
    return (float(count.group(1)), float(total.group(1))) if count and total else (0.0, 0.0)


def test_concurrent_writes_share_upserts_and_all_land(api, stack, user_id):
    before = _commit_counts(api)

    async def write_all() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {KEY_A}"}
        async with httpx.AsyncClient(base_url=stack.gateway_url, headers=headers) as client:
            return await asyncio.gather(
                *[
                    client.post(
                        "/v1/memories", json={"content": f"parallel note {i}", "user_id": user_id}
                    )
                    for i in range(48)
                ]
            )

    replies = asyncio.run(write_all())
    assert [r.status_code for r in replies] == [201] * 48
    for r in replies:
        assert api.get(f"/v1/memories/{r.json()['id']}").status_code == 200
    after = _commit_counts(api)
    upserts, notes = after[0] - before[0], after[1] - before[1]
    assert notes == 48
    assert upserts < 48, (before, after)  # at least one upsert carried several writes
