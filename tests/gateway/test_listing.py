"""Listing with filters and cursor pagination."""

from __future__ import annotations

from tests.conftest import create


def _all_pages(api, **params):
    seen, cursor, pages = [], None, 0
    while True:
        r = api.get("/v1/memories", params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        seen += [m["id"] for m in body["memories"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return seen, pages


def test_pagination_visits_every_note_exactly_once(api, user_id):
    ids = [create(api, content=f"page note {i}", user_id=user_id)["id"] for i in range(23)]
    seen, pages = _all_pages(api, user_id=user_id, limit=5)
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))
    assert pages == 5


def test_pagination_survives_writes_during_the_listing(api, user_id):
    ids = [create(api, content=f"stable {i}", user_id=user_id)["id"] for i in range(6)]
    first = api.get("/v1/memories", params={"user_id": user_id, "limit": 3}).json()
    # Changes while a client pages: an update and a new note.
    api.patch(f"/v1/memories/{ids[0]}", json={"category": "edited"}).raise_for_status()
    late = create(api, content="late arrival", user_id=user_id)["id"]
    rest, _ = _all_pages(api, user_id=user_id, limit=3, cursor=first["next_cursor"])
    seen = [m["id"] for m in first["memories"]] + rest
    assert seen == [*ids, late]


def test_filters(api, user_id):
    create(
        api,
        content="a",
        user_id=user_id,
        agent_id="planner",
        tags=["x"],
        category="c1",
        timestamp="2021-01-01T00:00:00Z",
    )
    create(
        api,
        content="b",
        user_id=user_id,
        agent_id="coder",
        tags=["x", "y"],
        category="c2",
        timestamp="2022-01-01T00:00:00Z",
    )
    create(
        api,
        content="c",
        user_id=user_id,
        agent_id="coder",
        tags=["y"],
        category="c2",
        timestamp="2023-01-01T00:00:00Z",
    )

    def contents(**params):
        r = api.get("/v1/memories", params={"user_id": user_id, **params})
        assert r.status_code == 200, r.text
        return sorted(m["content"] for m in r.json()["memories"])

    assert contents() == ["a", "b", "c"]
    assert contents(agent_id="coder") == ["b", "c"]
    assert contents(tag="x") == ["a", "b"]
    assert contents(category="c2", tag="x") == ["b"]
    assert contents(since="2022-01-01T00:00:00Z") == ["b", "c"]
    assert contents(until="2022-01-01T00:00:00Z") == ["a"]
    assert contents(status="pending") == ["a", "b", "c"]
    assert contents(status="done") == []


def test_cursor_is_bound_to_its_filters(api, user_id):
    for i in range(3):
        create(api, content=f"cursor {i}", user_id=user_id)
    first = api.get("/v1/memories", params={"user_id": user_id, "limit": 1}).json()
    r = api.get("/v1/memories", params={"user_id": "someone-else", "cursor": first["next_cursor"]})
    assert r.status_code == 422 and "cursor" in r.json()["message"]
    r = api.get("/v1/memories", params={"cursor": "garbage!"})
    assert r.status_code == 422 and "cursor" in r.json()["message"]
    r = api.get("/v1/memories", params={"limit": 100000})
    assert r.status_code == 422 and "limit" in r.json()["message"]
