"""The system under test is the real one: `chroma run`, the embedding service (real model) and
the gateway (plus the evolution service in tests/evolution), started once per session on free
loopback ports by the same launcher `make run` uses. A child that dies fails the next test with
its log."""

from __future__ import annotations

import contextlib
import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import httpx
import pytest

from amem.devstack import LocalStack

T = TypeVar("T")


def eventually(check: Callable[[], T], what: str, timeout: float = 30, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy (a refused or dropped connection counts
    as not yet) and return that; fail saying `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if result := check():
                return result
        assert time.monotonic() < deadline, f"{what} (waited {timeout} s)"
        time.sleep(interval)


KEY_A = "key-tenant-a-" + uuid.uuid4().hex
KEY_B = "key-tenant-b-" + uuid.uuid4().hex
MAX_BATCH = 20


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("amem")
    keys = {
        "tenant-a": KEY_A,
        # Configured by hash, as production should: the gateway never sees this key in plain.
        "tenant-b": "sha256:" + hashlib.sha256(KEY_B.encode()).hexdigest(),
    }
    # Tests hammer one key on purpose, so no rate limit; it has its own (tests/gateway/
    # test_keys.py).
    s = LocalStack.for_tenants(
        root,
        keys,
        # The core platform without evolution: notes stay exactly as written (`pending`), so
        # these tests can compare them field by field. Evolution has its own stack.
        evolution=False,
        env={
            "AMEM_MAX_BATCH": str(MAX_BATCH),
            "AMEM_MAX_BODY_BYTES": str(256 * 1024),
            "AMEM_LOG_LEVEL": "INFO",
            # Retrieval counts land within the test's wait (the default is 10 s).
            "AMEM_ACCESS_FLUSH_S": "0.5",
            # Small, so the tests of these limits stay small (tests/gateway/test_hostile_input.py).
            "AMEM_BODY_TIMEOUT_S": "2",
            "AMEM_MAX_LINK_MEMORIES": "6",
        },
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _stacks_alive(request: pytest.FixtureRequest) -> None:
    """Fail fast, with the child's log, when a process of a stack the test uses has died."""
    for name in ("stack", "evo_stack"):
        if name in request.fixturenames:
            request.getfixturevalue(name).check_alive()


def client_for(stack: LocalStack, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=60)


@pytest.fixture
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    """A client of tenant A."""
    with client_for(stack, KEY_A) as c:
        yield c


@pytest.fixture
def api_b(stack: LocalStack) -> Iterator[httpx.Client]:
    """A client of tenant B."""
    with client_for(stack, KEY_B) as c:
        yield c


@pytest.fixture
def anon(stack: LocalStack) -> Iterator[httpx.Client]:
    with client_for(stack, None) as c:
        yield c


@pytest.fixture
def user_id() -> str:
    """A user id no other test uses, so each test sees only its own notes through filters."""
    return f"user-{uuid.uuid4().hex[:12]}"


def create(api: httpx.Client, **fields) -> dict:
    r = api.post("/v1/memories", json=fields)
    assert r.status_code == 201, r.text
    return r.json()
