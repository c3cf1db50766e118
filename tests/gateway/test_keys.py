"""Managed API keys and rate limits, on a stack of their own with two gateway replicas over one
ChromaDB: keys made through the admin API (and the `amem keys` CLI) work on every replica at
once, rotation keeps the old key working for its grace period, revocation ends a key, admin
and tenant keys cannot stand in for each other, and each key has its own rate limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from amem.devstack import LocalStack
from tests.conftest import KEY_A

ADMIN = "admin-" + uuid.uuid4().hex
RATE = 20  # requests per second per key


@pytest.fixture(scope="module")
def replicas(stack: LocalStack, tmp_path_factory) -> Iterator[tuple[LocalStack, LocalStack]]:
    root = tmp_path_factory.mktemp("keys")
    env = {
        "AMEM_ADMIN_API_KEYS": json.dumps([ADMIN]),
        "AMEM_KEYS_REFRESH_S": "1",
        "AMEM_QUOTAS": json.dumps({"small": {"notes": 3}}),
    }
    first, second = (
        LocalStack.for_tenants(
            root / name,
            {"tenant-a": KEY_A},
            env=env,
            rate_limit=f"{RATE}/second",
            embedding_from=stack,
            evolution=False,
        )
        # The second replica: its own gateway over the first one's ChromaDB (below).
        for name in ("one", "two")
    )
    try:
        first.start()
        second.chroma_port = first.chroma_port
        second.start_gateway()
        yield first, second
    finally:
        second.stop()
        first.stop()


def _as(s: LocalStack, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=s.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def _create(s: LocalStack, tenant: str, **extra) -> dict:
    with _as(s, ADMIN) as admin:
        r = admin.post("/v1/admin/keys", json={"tenant": tenant, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_a_new_key_works_on_every_replica_and_is_never_shown_again(replicas) -> None:
    one, two = replicas
    issued = _create(one, "acme", name="ci")
    assert issued["key"].startswith("amem_") and issued["tenant"] == "acme"
    with _as(one, issued["key"]) as c1, _as(two, issued["key"]) as c2:
        note = c1.post("/v1/memories", json={"content": "acme's first memory"}).json()
        assert c2.get(f"/v1/memories/{note['id']}").status_code == 200
    with _as(two, ADMIN) as admin:
        listed = admin.get("/v1/admin/keys", params={"tenant": "acme"}).json()["keys"]
    assert [k["id"] for k in listed] == [issued["id"]]
    assert "key" not in listed[0] and issued["key"] not in json.dumps(listed)


def test_admin_and_tenant_keys_cannot_stand_in_for_each_other(replicas, stack) -> None:
    one, _ = replicas
    with _as(one, KEY_A) as tenant:
        r = tenant.get("/v1/admin/keys")
        assert r.status_code == 403 and r.json()["error"] == "permission_denied"
    with _as(one, ADMIN) as admin:
        assert admin.get("/v1/memories").status_code == 401
    # Where no admin key is configured, the admin API is off.
    with _as(stack, KEY_A) as c:
        r = c.post("/v1/admin/keys", json={"tenant": "x"})
        assert r.status_code == 403 and "off" in r.json()["message"]


def test_rotation_keeps_the_old_key_for_its_grace_then_ends_it(replicas) -> None:
    one, two = replicas
    old = _create(one, "rotor")
    with _as(two, ADMIN) as admin:
        r = admin.post(f"/v1/admin/keys/{old['id']}:rotate", json={"grace_s": 3})
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["tenant"] == "rotor" and new["key"] != old["key"]
    for s in (one, two):
        for key in (old["key"], new["key"]):
            with _as(s, key) as c:
                assert c.get("/v1/memories").status_code == 200
    time.sleep(4.5)  # the grace, and a key refresh
    for s in (one, two):
        with _as(s, old["key"]) as c:
            assert c.get("/v1/memories").status_code == 401
        with _as(s, new["key"]) as c:
            assert c.get("/v1/memories").status_code == 200


def test_a_revoked_key_stops_working_everywhere(replicas) -> None:
    one, two = replicas
    issued = _create(one, "leaky")
    with _as(two, issued["key"]) as c:
        assert c.get("/v1/memories").status_code == 200
    with _as(one, ADMIN) as admin:
        r = admin.delete(f"/v1/admin/keys/{issued['id']}")
        assert r.status_code == 200 and r.json()["revoked_at"]
        assert admin.delete("/v1/admin/keys/key_nope").status_code == 404
    with _as(one, issued["key"]) as c:
        assert c.get("/v1/memories").status_code == 401  # at once where it was revoked
    deadline = time.monotonic() + 5
    with _as(two, issued["key"]) as c:
        while c.get("/v1/memories").status_code != 401:
            assert time.monotonic() < deadline, "the other replica still accepts the key"
            time.sleep(0.2)


def test_each_key_has_its_own_rate_limit(replicas) -> None:
    one, _ = replicas
    noisy, quiet = _create(one, "noisy")["key"], _create(one, "quiet")["key"]
    with _as(one, noisy) as c:
        codes = [c.get("/v1/memories", params={"limit": 1}) for _ in range(RATE * 2)]
    limited = [r for r in codes if r.status_code == 429]
    assert limited, "no request was limited"
    assert limited[0].json()["error"] == "rate_limited"
    assert int(limited[0].headers["retry-after"]) >= 1
    assert {r.status_code for r in codes} <= {200, 429}
    with _as(one, quiet) as c:
        assert c.get("/v1/memories").status_code == 200
    time.sleep(1.1)
    with _as(one, noisy) as c:
        assert c.get("/v1/memories").status_code == 200


def test_the_keys_cli(replicas) -> None:
    one, _ = replicas

    def amem(*args: str, admin: str | None = ADMIN) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, AMEM_URL=one.gateway_url)
        env.pop("AMEM_ADMIN_KEY", None)
        if admin:
            env["AMEM_ADMIN_KEY"] = admin
        return subprocess.run(
            [sys.executable, "-m", "amem", "keys", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    made = amem("create", "--tenant", "cli-tenant", "--name", "laptop")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    key_id = made.stderr.split()[0]
    with _as(one, key) as c:
        assert c.get("/v1/memories").status_code == 200
    listed = amem("list", "--tenant", "cli-tenant")
    assert key_id in listed.stdout and "laptop" in listed.stdout and key not in listed.stdout
    assert amem("revoke", key_id).returncode == 0
    with _as(one, key) as c:
        assert c.get("/v1/memories").status_code == 401
    assert amem("list", "--tenant", "cli-tenant").stdout.strip() == ""
    assert key_id in amem("list", "--tenant", "cli-tenant", "--all").stdout
    denied = amem("list", admin=KEY_A)
    assert denied.returncode == 1 and "403" in denied.stderr
    assert amem("list", admin=None).returncode == 2


def test_a_tenant_cannot_hold_more_notes_than_its_quota(replicas) -> None:
    one, _ = replicas
    with _as(one, _create(one, "small")["key"]) as c:
        for i in range(2):
            assert c.post("/v1/memories", json={"content": f"note {i}"}).status_code == 201
        batch = {"memories": [{"content": "x"}, {"content": "y"}]}
        r = c.post("/v1/memories/batch", json=batch)
        assert r.status_code == 403 and r.json()["error"] == "quota_exceeded"
        assert "quota of 3" in r.json()["message"]
        assert c.post("/v1/memories", json={"content": "the third"}).status_code == 201
        assert c.post("/v1/memories", json={"content": "a fourth"}).status_code == 403
        usage = c.get("/v1/usage").json()
        assert (usage["notes"], usage["notes_quota"]) == (3, 3)
        assert usage["llm_tokens_per_day"] is None
