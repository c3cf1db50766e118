"""The Python SDK (amem.client) against the real stacks: the session's (no evolution) and the
evolution stack (wait, history, revert). Retries are checked with FAULT INJECTION: an httpx
transport that drops or refuses chosen attempts and passes the rest to the real gateway."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

import amem
from amem import AsyncClient, Client
from amem.schemas import MemoryPublic, SearchResponse
from tests.conftest import KEY_A, KEY_B


@pytest.fixture
def client(stack) -> Iterator[Client]:
    with Client(stack.gateway_url, KEY_A) as c:
        yield c


def test_every_operation_round_trips(client, user_id):
    first = client.add("Dana leads the storage team", user_id=user_id, tags=["people"])
    assert first.content == "Dana leads the storage team" and first.tags == ["people"]
    second = client.add("Storage team moved to Lisbon", user_id=user_id, links=[first.id])
    assert client.get(first.id) == MemoryPublic.model_validate(first.model_dump())
    changed = client.update(first.id, category="team", if_version=first.version)
    assert changed.category == "team" and changed.version == first.version + 1
    hits = client.search("who leads storage?", user_id=user_id, k=1, include_links=True)
    assert isinstance(hits, SearchResponse) and hits.results[0].memory.id in (first.id, second.id)
    assert client.links(second.id, depth=1).memories[-1].memory.id == first.id
    assert client.history(first.id).entries == []
    batch = client.add_batch(
        [{"content": f"turn {i}", "user_id": user_id} for i in range(3)], conversation=True
    )
    assert [m.follows for m in batch][1:] == [batch[0].id, batch[1].id]
    listed = list(client.list(user_id=user_id, page_size=2))  # three pages
    assert [m.id for m in listed] == [first.id, second.id, *(m.id for m in batch)]
    receipt = client.delete(first.id)
    assert receipt.erased == [first.id] and receipt.unlinked == [second.id]
    erased = client.erase(user_id=user_id)
    assert erased.deleted == 4
    assert client.usage().notes >= 0


def test_errors_are_the_taxonomys_classes(client, stack):
    with pytest.raises(amem.NotFound):
        client.get("no-such-memory")
    with pytest.raises(amem.InvalidArgument, match="timestamp"):
        client.add("bad time", timestamp="yesterday")  # refused before it is sent
    with pytest.raises(amem.InvalidArgument, match="links"):
        client.add("dangling", links=["no-such-memory"])  # refused by the server
    note = client.add("versioned")
    client.update(note.id, category="a")
    with pytest.raises(amem.PreconditionFailed) as stale:
        client.update(note.id, category="b", if_version=note.version)
    assert stale.value.http_status == 412
    with Client(stack.gateway_url, "not-a-key") as stranger, pytest.raises(amem.Unauthenticated):
        stranger.get(note.id)
    with Client(stack.gateway_url, KEY_B) as other, pytest.raises(amem.NotFound):
        other.get(note.id)  # another tenant's id looks like none at all


def test_defaults_come_from_the_environment(stack, monkeypatch):
    monkeypatch.setenv("AMEM_URL", stack.gateway_url)
    monkeypatch.setenv("AMEM_API_KEY", KEY_A)
    with Client() as c:
        assert c.add("from the environment").content == "from the environment"


def test_a_repeated_create_with_one_idempotency_key_writes_once(client, user_id):
    key = str(uuid.uuid4())
    first = client.add("written once", user_id=user_id, idempotency_key=key)
    again = client.add("written once", user_id=user_id, idempotency_key=key)
    assert again.id == first.id
    assert [m.id for m in client.list(user_id=user_id)] == [first.id]
    with pytest.raises(amem.InvalidArgument, match="Idempotency-Key"):
        client.add("another request", user_id=user_id, idempotency_key=key)
    batch_key = str(uuid.uuid4())
    items = [{"content": f"b{i}", "user_id": user_id} for i in range(2)]
    one = client.add_batch(items, idempotency_key=batch_key)
    two = client.add_batch(items, idempotency_key=batch_key)
    assert [m.id for m in one] == [m.id for m in two]
    assert len(list(client.list(user_id=user_id))) == 3


def test_the_replay_is_marked_and_the_key_is_checked(api, user_id):
    body = {"content": "raw replay", "user_id": user_id}
    headers = {"Idempotency-Key": "k-" + uuid.uuid4().hex}
    first = api.post("/v1/memories", json=body, headers=headers)
    second = api.post("/v1/memories", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    r = api.post("/v1/memories", json=body, headers={"Idempotency-Key": "has space"})
    assert r.status_code == 422 and "Idempotency-Key" in r.json()["message"]


class Faults(httpx.BaseTransport):
    """FAULT INJECTION: `plan[i]` decides attempt i ("pass", "drop-after": the request reaches
    the gateway but the answer is lost, "refuse": no connection, "503": a refusal with
    Retry-After); later attempts pass. Everything that passes goes to the real gateway."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = plan
        self.attempts: list[httpx.Request] = []
        self._real = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self.plan[len(self.attempts)] if len(self.attempts) < len(self.plan) else "pass"
        self.attempts.append(request)
        if fault == "refuse":
            raise httpx.ConnectError("injected: connection refused", request=request)
        if fault == "503":
            body = b'{"error": "unavailable", "message": "injected"}'
            headers = {"retry-after": "0", "content-type": "application/json"}
            return httpx.Response(503, content=body, headers=headers)
        response = self._real.handle_request(request)
        if fault == "drop-after":
            response.read()
            raise httpx.ReadError("injected: the answer was lost", request=request)
        return response


def _faulty(stack, plan: list[str], **kwargs) -> tuple[Client, Faults]:
    faults = Faults(plan)
    http = httpx.Client(
        base_url=stack.gateway_url,
        headers={"Authorization": f"Bearer {KEY_A}"},
        transport=faults,
    )
    return Client(stack.gateway_url, KEY_A, http_client=http, **kwargs), faults


def test_a_create_whose_answer_was_lost_is_retried_without_a_duplicate(stack, client, user_id):
    faulty, faults = _faulty(stack, ["drop-after", "drop-after"])
    note = faulty.add("answer lost twice", user_id=user_id)
    assert len(faults.attempts) == 3
    keys = {a.headers["idempotency-key"] for a in faults.attempts}
    assert len(keys) == 1  # one key for every attempt of the call
    assert [m.id for m in client.list(user_id=user_id)] == [note.id]


def test_refusals_are_retried_within_the_bound_and_then_raised(stack, user_id):
    faulty, faults = _faulty(stack, ["503", "refuse"], max_retries=2)
    assert faulty.add("after two refusals", user_id=user_id).content == "after two refusals"
    assert len(faults.attempts) == 3
    faulty, faults = _faulty(stack, ["503"] * 5, max_retries=2)
    with pytest.raises(amem.Unavailable):
        faulty.get("anything")
    assert len(faults.attempts) == 3
    # A revert is not repeatable: a lost connection is the caller's to decide about.
    faulty, faults = _faulty(stack, ["refuse"], max_retries=3)
    with pytest.raises(httpx.ConnectError):
        faulty.revert("some-memory", "some-entry")
    assert len(faults.attempts) == 1


def test_the_async_client(stack, user_id):
    async def scenario() -> list[str]:
        async with AsyncClient(stack.gateway_url, KEY_A) as c:
            notes = [await c.add(f"async {i}", user_id=user_id) for i in range(3)]
            await c.update(notes[0].id, tags=["async"])
            assert (await c.get(notes[0].id)).tags == ["async"]
            hits = await c.search("async", user_id=user_id, k=3, mode="lexical")
            assert {h.memory.id for h in hits.results} <= {n.id for n in notes}
            listed = [m.id async for m in c.list(user_id=user_id, page_size=2)]
            await c.delete(notes[2].id)
            with pytest.raises(amem.NotFound):
                await c.get(notes[2].id)
            return listed

    listed = asyncio.run(scenario())
    assert len(listed) == 3


# --- one source of truth -----------------------------------------------------------------

_METHODS: dict[str, Callable] = {
    "create_memory": Client.add,
    "create_memories": Client.add_batch,
    "list_memories": Client.list,
    "erase_memories": Client.erase,
    "search_memories": Client.search,
    "get_memory": Client.get,
    "update_memory": Client.update,
    "delete_memory": Client.delete,
    "get_memory_links": Client.links,
    "evolve_memory": Client.retry_evolution,
    "get_memory_history": Client.history,
    "revert_memory_history_entry": Client.revert,
    "get_usage": Client.usage,
    "create_key": Client.create_key,
    "list_keys": Client.list_keys,
    "rotate_key": Client.rotate_key,
    "revoke_key": Client.revoke_key,
}


def test_the_sdk_covers_every_operation_with_the_servers_own_models(anon):
    import typing

    schema = anon.get("/openapi.json").json()
    operations = {
        op["operationId"]: op
        for item in schema["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and op.get("operationId") not in (None, "healthz", "readyz")
    }
    assert set(operations) == set(_METHODS), set(operations) ^ set(_METHODS)
    components = schema["components"]["schemas"]
    for operation_id, op in operations.items():
        [ok] = [s for s in op["responses"] if s.startswith("2")]
        ref = op["responses"][ok]["content"]["application/json"]["schema"]["$ref"]
        name = ref.rsplit("/", 1)[1]
        hints = typing.get_type_hints(_METHODS[operation_id])
        returned = hints["return"]
        model = typing.get_args(returned)[0] if typing.get_args(returned) else returned
        if operation_id == "create_memories":  # the SDK hands back the batch's list
            assert name == "MemoryBatchWritten"
            continue
        if operation_id == "list_memories":  # the SDK iterates over the pages
            assert name == "MemoryPage"
            continue
        assert model.__name__ == name, operation_id
        # The very model the server documents: same fields, same required ones.
        assert set(components[name]["properties"]) == set(model.model_fields), name
        required = {f for f, info in model.model_fields.items() if info.is_required()}
        assert set(components[name].get("required", [])) == required, name


def test_ids_stay_one_path_segment(client):
    for bad in ("x/..?user_id=someone", "a/b", "..", ""):
        with pytest.raises(amem.InvalidArgument):
            client.delete(bad)
    with pytest.raises(amem.InvalidArgument, match="id"):
        client.add("named badly", id="a/b")  # refused before it is sent
    note = client.add("percent % and colon: ids", id="ok:id-" + uuid.uuid4().hex[:6])
    assert client.get(note.id).id == note.id


def test_a_retried_create_with_a_chosen_id_answers_the_first_write(stack, client, user_id):
    chosen = "chosen-" + uuid.uuid4().hex[:10]
    faulty, faults = _faulty(stack, ["drop-after"])
    note = faulty.add("chosen and retried", id=chosen, user_id=user_id)
    assert note.id == chosen and len(faults.attempts) == 2
    assert [m.id for m in client.list(user_id=user_id)] == [chosen]


def test_calls_that_may_have_landed_are_not_sent_again(stack, client):
    note = client.add("delete me once")
    faulty, faults = _faulty(stack, ["drop-after"], max_retries=3)
    with pytest.raises(httpx.ReadError):
        faulty.delete(note.id)  # it landed; a repeat would have said 404
    assert len(faults.attempts) == 1
    with pytest.raises(amem.NotFound):
        client.get(note.id)
    faulty, faults = _faulty(stack, ["503", "503"], max_retries=3)
    with pytest.raises(amem.Unavailable):
        faulty.revert("some-memory", "some-entry")  # a 503 may follow a landed change
    assert len(faults.attempts) == 1


def test_racing_repeats_of_one_keyed_create_leave_one_memory(stack, client, user_id):
    from concurrent.futures import ThreadPoolExecutor

    key = str(uuid.uuid4())

    def post(_: int) -> str:
        with Client(stack.gateway_url, KEY_A) as c:
            return c.add("raced", user_id=user_id, idempotency_key=key).id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(post, range(8)))
    assert len(ids) == 1
    assert [m.id for m in client.list(user_id=user_id)] == list(ids)
