"""Bad input gets a 4xx that names the problem, in one error shape; never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import create


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({}, "content"),
        ({"content": ""}, "content"),
        ({"content": "   "}, "content"),
        ({"content": 42}, "content"),
        ({"content": "x", "tags": "not-a-list"}, "tags"),
        ({"content": "x", "tags": [""]}, "tags.0"),
        ({"content": "x", "keywords": ["k"] * 33}, "keywords"),
        ({"content": "x", "timestamp": "yesterday"}, "timestamp"),
        ({"content": "x", "metadata": {"nested": {"a": 1}}}, "metadata"),
        ({"content": "x", "metadata": {"long": "v" * 1025}}, "metadata.long"),
        ({"content": "x", "unknown_field": 1}, "unknown_field"),
        ({"content": "x" * 16_001}, "content"),
    ],
)
def test_invalid_bodies_get_422_naming_the_field(api, body, names):
    r = api.post("/v1/memories", json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert err["error"] == "invalid_argument"
    assert names in err["message"]


def test_malformed_json_gets_422(api):
    r = api.post(
        "/v1/memories", content=b'{"content": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_argument"


def test_oversized_body_gets_413(api):
    r = api.post("/v1/memories", json={"content": "x" * (300 * 1024)})
    assert r.status_code == 413
    assert r.json()["error"] == "payload_too_large"


def test_oversized_chunked_body_gets_413(api):
    def chunks():
        for _ in range(300):
            yield b"x" * 1024

    r = api.post("/v1/memories", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_unknown_route_and_method(api):
    r = api.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = api.put("/v1/memories")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


def test_a_failed_write_leaves_nothing_behind(api, user_id):
    before = api.get("/v1/memories", params={"user_id": user_id}).json()["memories"]
    r = api.post("/v1/memories", json={"content": "x", "user_id": user_id, "links": ["missing"]})
    assert r.status_code == 422
    after = api.get("/v1/memories", params={"user_id": user_id}).json()["memories"]
    assert before == after == []


def test_health_endpoints(anon):
    assert anon.get("/healthz").json() == {"status": "ok"}
    ready = anon.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"chromadb": True, "embedding": True}
    metrics = anon.get("/metrics").text
    assert "amem_gateway_http_requests_total" in metrics or "http_requests_total" in metrics
    assert anon.get("/openapi.json").json()["paths"]["/v1/memories/search"]


def test_note_survives_every_error_path(api):
    note = create(api, content="sturdy")
    api.patch(f"/v1/memories/{note['id']}", json={"links": ["missing"]})
    api.patch(f"/v1/memories/{note['id']}", json={"tags": [""]})
    got = api.get(f"/v1/memories/{note['id']}").json()
    assert got["links"] == [] and got["tags"] == [] and got["version"] == 1
