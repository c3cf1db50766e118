"""amem as a LangGraph store (amem.langgraph_store.AmemStore) against the session's stack,
through langgraph's own store API (sync and async), including the calls LangMem's memory
tools make."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from langgraph.store.base import InvalidNamespaceError, SearchItem

from amem import AsyncClient, Client
from amem.langgraph_store import AmemStore, item_id, namespace_user
from tests.conftest import KEY_A, KEY_B


@pytest.fixture
def store(stack):
    s = AmemStore(Client(stack.gateway_url, KEY_A), AsyncClient(stack.gateway_url, KEY_A))
    yield s
    s.close()


@pytest.fixture
def ns() -> tuple[str, ...]:
    return ("memories", f"user-{uuid.uuid4().hex[:8]}")


def test_put_get_update_and_delete_round_trip(store, ns, stack):
    assert store.get(ns, "missing") is None
    value = {"content": "Ana prefers green tea", "kind": "preference", "n": 2}
    store.put(ns, "tea", value)
    item = store.get(ns, "tea")
    assert item.value == value and item.key == "tea" and item.namespace == ns
    assert item.created_at <= item.updated_at
    # Any other shape round-trips too, as JSON.
    odd = {"facts": ["a", {"b": 1.5}], "content": 7}
    store.put(ns, "odd", odd)
    assert store.get(ns, "odd").value == odd
    # In place: the same memory, a new value, created_at kept.
    time.sleep(0.01)
    store.put(ns, "tea", {"content": "Ana now prefers coffee"})
    again = store.get(ns, "tea")
    assert again.value == {"content": "Ana now prefers coffee"}
    assert again.created_at == item.created_at and again.updated_at > item.updated_at
    # It is an ordinary amem memory of the namespace's "user".
    with Client(stack.gateway_url, KEY_A) as c:
        memory = c.get(item_id(ns, "tea"))
    assert memory.content == "Ana now prefers coffee"
    assert memory.user_id == namespace_user(ns) == "/".join(ns) and memory.agent_id == "langgraph"
    store.delete(ns, "tea")
    assert store.get(ns, "tea") is None
    store.delete(ns, "tea")  # deleting what is gone is no error


def test_search_ranks_by_query_filters_and_pages(store, ns):
    for key, text, kind in [
        ("1", "The cat is called Miso", "pet"),
        ("2", "Miso soup is a favourite", "food"),
        ("3", "The dog is called Rex", "pet"),
    ]:
        store.put(ns, key, {"content": text, "kind": kind})
    store.put((*ns, "deeper"), "4", {"content": "A cat called Tom", "kind": "pet"})
    hits = store.search(ns, query="what is the cat's name?", limit=2)
    assert all(isinstance(h, SearchItem) for h in hits) and len(hits) == 2
    assert hits[0].key == "1" and hits[0].score >= hits[1].score
    assert {h.namespace for h in hits} <= {ns, (*ns, "deeper")}
    only_pets = store.search(ns, query="animals", filter={"kind": "pet"}, limit=10)
    assert {h.key for h in only_pets} == {"1", "3", "4"}
    assert store.search(ns, filter={"kind": {"$ne": "pet"}})[0].key == "2"
    listed = store.search(ns, limit=10)  # no query: stored order, no scores
    assert [h.key for h in listed] == ["1", "2", "3", "4"] and listed[0].score is None
    assert [h.key for h in store.search(ns, limit=2, offset=1)] == ["2", "3"]
    assert [h.key for h in store.search((*ns, "deeper"))] == ["4"]


def test_list_namespaces(store):
    root = f"lg-{uuid.uuid4().hex[:8]}"
    for path in [("a", "x"), ("a", "y"), ("b", "x")]:
        store.put((root, *path), "k", {"content": f"in {path}"})
    assert store.list_namespaces(prefix=(root,)) == [
        (root, "a", "x"),
        (root, "a", "y"),
        (root, "b", "x"),
    ]
    assert store.list_namespaces(prefix=(root,), suffix=("x",)) == [
        (root, "a", "x"),
        (root, "b", "x"),
    ]
    assert store.list_namespaces(prefix=(root, "*", "y")) == [(root, "a", "y")]
    assert store.list_namespaces(prefix=(root,), max_depth=2) == [(root, "a"), (root, "b")]


def test_namespace_rules_and_ttl(store):
    with pytest.raises(InvalidNamespaceError):
        store.put(("langgraph", "x"), "k", {"content": "reserved"})
    with pytest.raises(InvalidNamespaceError):
        store.put(("a.b",), "k", {"content": "dots"})
    with pytest.raises(NotImplementedError):
        store.put(("ttl",), "k", {"content": "x"}, ttl=5)
    weird = ("a/b", "c\\d")
    store.put(weird, "k", {"content": "escaped labels"})
    assert store.get(weird, "k").namespace == weird
    assert namespace_user(weird) == "a\\/b/c\\\\d"


def test_the_async_api_as_langmem_uses_it(store, ns):
    async def scenario() -> list[dict]:
        key = str(uuid.uuid4())
        await store.aput(ns, key=key, value={"content": "User likes hiking in the Alps"})
        await store.aput(ns, key=str(uuid.uuid4()), value={"content": "User is vegetarian"})
        found = await store.asearch(ns, query="outdoor hobbies", limit=10, offset=0)
        assert found[0].key == key
        await store.aput(ns, key=key, value={"content": "User likes hiking and skiing"})
        assert (await store.aget(ns, key)).value["content"].endswith("skiing")
        await store.adelete(ns, key)
        assert await store.aget(ns, key) is None
        return [m.dict() for m in await store.asearch(ns, query="food")]

    serialised = asyncio.run(scenario())
    assert (
        json.dumps(serialised, default=str)
        and serialised[0]["value"]["content"] == "User is vegetarian"
    )


def test_tenants_stay_apart(store, ns, stack):
    store.put(ns, "private", {"content": "tenant A only"})
    other = AmemStore(Client(stack.gateway_url, KEY_B))
    assert other.get(ns, "private") is None
    assert other.search(ns, query="tenant") == []
    other.close()
