"""Keys map to tenants; a tenant never sees, finds or changes another tenant's notes."""

from __future__ import annotations

import pytest

from tests.conftest import create


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["no-key", "wrong-key", "wrong-scheme"],
)
def test_requests_without_a_valid_key_get_401(anon, headers):
    for method, path, body in [
        ("GET", "/v1/memories", None),
        ("POST", "/v1/memories", {"content": "x"}),
        ("POST", "/v1/memories", {"content": ""}),  # auth is checked before the body
        ("POST", "/v1/memories/search", {"query": "x"}),
        ("GET", "/v1/memories/some-id", None),
    ]:
        r = anon.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (method, path, r.text)
        assert r.json()["error"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"


def test_tenant_b_cannot_touch_tenant_a(api, api_b, user_id):
    note = create(api, content="Tenant A's secret launch date is June 3", user_id=user_id)
    nid = note["id"]
    assert api_b.get(f"/v1/memories/{nid}").status_code == 404
    assert api_b.patch(f"/v1/memories/{nid}", json={"content": "pwned"}).status_code == 404
    assert api_b.delete(f"/v1/memories/{nid}").status_code == 404
    assert api_b.get(f"/v1/memories/{nid}/links").status_code == 404
    listed = api_b.get("/v1/memories", params={"user_id": user_id}).json()["memories"]
    assert listed == []
    found = api_b.post("/v1/memories/search", json={"query": "secret launch date", "k": 50}).json()[
        "results"
    ]
    assert nid not in [h["memory"]["id"] for h in found]
    assert api_b.delete("/v1/memories", params={"user_id": user_id}).json()["deleted"] == 0
    r = api_b.post("/v1/memories", json={"content": "link across", "links": [nid]})
    assert r.status_code == 422
    # Tenant A's note is untouched.
    got = api.get(f"/v1/memories/{nid}").json()
    assert got["content"] == note["content"] and got["version"] == 1
