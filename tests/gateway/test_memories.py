"""Create, read, update and delete, field by field, through the REST API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.conftest import MAX_BATCH, create

FULL = {
    "content": "Met Dana at the Lisbon offsite; she leads the storage team.",
    "keywords": ["Dana", "Lisbon", "offsite", "Dana"],
    "tags": ["people", "work"],
    "context": "Work contacts made at company events",
    "category": "contact",
    "timestamp": "2024-05-01T10:00:00.123456Z",
    "agent_id": "agent-7",
    "metadata": {"source": "chat", "turn": 12, "score": 0.5, "pinned": True, "none": None},
}


def test_create_and_get_round_trip_every_field(api, user_id):
    note = create(api, **FULL, user_id=user_id)
    got = api.get(f"/v1/memories/{note['id']}")
    assert got.status_code == 200
    body = got.json()
    for name, value in FULL.items():
        if name == "timestamp":
            assert datetime.fromisoformat(body[name]) == datetime(2024, 5, 1, 10, 0, 0, 123456, UTC)
        else:
            assert body[name] == value, name  # lists stay lists, order and repeats kept
    assert body["user_id"] == user_id
    assert body["links"] == []
    assert body["status"] == "pending"
    assert body["retrieval_count"] == 0
    assert body["evolution_history"] == []
    assert body["version"] == 1
    assert note["embedding_truncated"] is False
    assert {k: v for k, v in note.items() if k != "embedding_truncated"} == body


def test_defaults_for_a_bare_note(api):
    note = create(api, content="just words")
    assert note["keywords"] == note["tags"] == note["links"] == []
    assert note["context"] == note["category"] == ""
    assert note["user_id"] is None and note["agent_id"] is None
    assert note["metadata"] == {}


def test_patch_changes_only_given_fields_and_reembeds(api, user_id):
    note = create(
        api, content="The office wifi password is on the fridge", user_id=user_id, tags=["home"]
    )
    r = api.patch(f"/v1/memories/{note['id']}", json={"tags": ["office", "wifi"], "agent_id": None})
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["tags"] == ["office", "wifi"]
    assert updated["content"] == note["content"]
    assert updated["user_id"] == user_id
    assert updated["version"] == 2
    # The tag is part of the embedded text, so a search by it finds the note.
    r = api.post(
        "/v1/memories/search",
        json={"query": "office wifi", "k": 1, "filters": {"user_id": user_id}},
    )
    assert r.json()["results"][0]["memory"]["id"] == note["id"]
    assert api.get(f"/v1/memories/{note['id']}").json()["tags"] == ["office", "wifi"]


def test_patch_refuses_null_content_and_unknown_fields(api):
    note = create(api, content="stable")
    r = api.patch(f"/v1/memories/{note['id']}", json={"content": None})
    assert r.status_code == 422 and "content" in r.json()["message"]
    r = api.patch(f"/v1/memories/{note['id']}", json={"colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["message"]
    assert api.get(f"/v1/memories/{note['id']}").json()["version"] == 1


def test_delete_then_404(api):
    note = create(api, content="ephemeral")
    assert api.delete(f"/v1/memories/{note['id']}").status_code == 200
    r = api.get(f"/v1/memories/{note['id']}")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"
    assert api.delete(f"/v1/memories/{note['id']}").status_code == 404


def test_links_must_exist_and_deletion_unlinks(api):
    a = create(api, content="Project Falcon kicked off in March")
    b = create(api, content="Falcon's first milestone slipped", links=[a["id"]])
    r = api.post("/v1/memories", json={"content": "dangling", "links": ["no-such-id"]})
    assert r.status_code == 422 and "no-such-id" in r.json()["message"]
    r = api.delete(f"/v1/memories/{a['id']}")
    assert r.status_code == 200
    assert r.json()["erased"] == [a["id"]] and r.json()["unlinked"] == [b["id"]]
    assert api.get(f"/v1/memories/{b['id']}").json()["links"] == []


def test_links_neighbourhood_to_depth(api):
    a = create(api, content="root note")
    b = create(api, content="child note", links=[])
    c = create(api, content="grandchild note")
    api.patch(f"/v1/memories/{a['id']}", json={"links": [b["id"]]}).raise_for_status()
    api.patch(f"/v1/memories/{b['id']}", json={"links": [c["id"]]}).raise_for_status()
    one = api.get(f"/v1/memories/{a['id']}/links", params={"depth": 1}).json()
    assert {m["memory"]["id"]: m["depth"] for m in one["memories"]} == {a["id"]: 0, b["id"]: 1}
    two = api.get(f"/v1/memories/{a['id']}/links", params={"depth": 2}).json()
    assert {m["memory"]["id"]: m["depth"] for m in two["memories"]} == {
        a["id"]: 0,
        b["id"]: 1,
        c["id"]: 2,
    }
    assert sorted(map(tuple, two["edges"])) == sorted([(a["id"], b["id"]), (b["id"], c["id"])])
    assert api.get(f"/v1/memories/{a['id']}/links", params={"depth": 99}).status_code == 422
    r = api.patch(f"/v1/memories/{a['id']}", json={"links": [a["id"]]})
    assert r.status_code == 422


def test_batch_create_is_all_or_nothing(api, user_id):
    items = [{"content": f"batch note {i}", "user_id": user_id} for i in range(5)]
    r = api.post("/v1/memories/batch", json={"memories": items})
    assert r.status_code == 201, r.text
    ids = [m["id"] for m in r.json()["memories"]]
    assert len(set(ids)) == 5
    assert [api.get(f"/v1/memories/{i}").json()["content"] for i in ids] == [
        f"batch note {i}" for i in range(5)
    ]
    bad = [*items, {"content": "   "}]
    r = api.post("/v1/memories/batch", json={"memories": bad})
    assert r.status_code == 422 and "memories.5.content" in r.json()["message"]
    too_many = [{"content": f"n{i}"} for i in range(MAX_BATCH + 1)]
    r = api.post("/v1/memories/batch", json={"memories": too_many})
    assert r.status_code == 413
    listed = api.get("/v1/memories", params={"user_id": user_id, "limit": 100}).json()["memories"]
    assert len(listed) == 5


def test_erase_a_users_memories(api, user_id):
    mine = [create(api, content=f"erase me {i}", user_id=user_id) for i in range(3)]
    other = create(api, content="keep me", user_id=user_id + "-other", links=[mine[0]["id"]])
    r = api.delete("/v1/memories")
    assert r.status_code == 422 and "user_id" in r.json()["message"]
    r = api.delete("/v1/memories", params={"user_id": user_id})
    assert r.status_code == 200
    body = r.json()
    assert (body["deleted"], body["unlinked"]) == (3, 1)
    assert sorted(body["receipt"]["erased"]) == sorted(n["id"] for n in mine)
    assert body["receipt"]["unlinked"] == [other["id"]] and body["receipt"]["scrubbed"] == []
    for note in mine:
        assert api.get(f"/v1/memories/{note['id']}").status_code == 404
    kept = api.get(f"/v1/memories/{other['id']}").json()
    assert kept["links"] == []


def test_a_memory_can_have_an_id_of_the_callers_choosing_once(api):
    chosen = "chosen-" + uuid.uuid4().hex[:12]
    note = create(api, content="named by its caller", id=chosen)
    assert note["id"] == chosen and api.get(f"/v1/memories/{chosen}").json()["content"] == (
        "named by its caller"
    )
    r = api.post("/v1/memories", json={"content": "the same id again", "id": chosen})
    assert r.status_code == 409 and chosen in r.json()["message"]
    assert api.get(f"/v1/memories/{chosen}").json()["content"] == "named by its caller"
    twice = [{"content": "a", "id": "dup-" + chosen}, {"content": "b", "id": "dup-" + chosen}]
    r = api.post("/v1/memories/batch", json={"memories": twice})
    assert r.status_code == 422 and "once" in r.json()["message"]
