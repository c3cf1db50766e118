"""A second stack for evolution: its own ChromaDB, gateway and evolution service (sharing the
session's embedding service), with the LLM played by the scripted fake unless a test asks for
another backend."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from amem.devstack import LocalStack
from tests.conftest import KEY_A, KEY_B, client_for
from tests.scripted_llm import Reply, ScriptedLLM, answer, step

LLM_ENV = {
    "AMEM_EVOLUTION_LLM_BACKEND": "openai",
    "AMEM_EVOLUTION_LLM_MODEL": "scripted-model",
    "AMEM_EVOLUTION_LLM_TIMEOUT_S": "2",
    "AMEM_EVOLUTION_LLM_MAX_ATTEMPTS": "3",
    "AMEM_EVOLUTION_SCAN_INTERVAL_S": "1",
}

# A tenant with a daily LLM budget: the scripted LLM reports 120 tokens per call.
KEY_BUDGET = "key-tenant-budget-" + uuid.uuid4().hex
BUDGET = 300

_OFFERED = re.compile(r"^\[(m\d+)\] (.*)$", re.MULTILINE)
_NEW = re.compile(r"^New note:\n(.*)$", re.MULTILINE)


def offered(request: dict) -> dict[str, str]:
    """handle -> content of each neighbour an evolution prompt shows, in order. A reply names
    a neighbour by its handle (m1, m2, ...), which the evolution service maps to its id."""
    return {m.group(1): m.group(2) for m in _OFFERED.finditer(request["messages"][-1]["content"])}


def new_note(request: dict) -> str:
    """The content of the new note an evolution prompt is about."""
    found = _NEW.search(request["messages"][-1]["content"])
    assert found, request["messages"][-1]["content"]
    return found.group(1)


def default_responder(request: dict) -> Reply:
    """A plain, deterministic LLM: construction from the first words, no links, no updates."""
    if step(request) == "Construction":
        note = request["messages"][-1]["content"].split("\n")[1]
        words = [w.strip(".,;:!?").lower() for w in note.split() if len(w) > 3]
        return answer(
            {"keywords": words[:3], "context": f"About {note[:40]}", "tags": ["scripted"]}
        )
    return answer({"links": [], "tags": [], "neighbour_updates": []})


@pytest.fixture(scope="session")
def scripted() -> Iterator[ScriptedLLM]:
    llm = ScriptedLLM(default_responder)
    yield llm
    llm.close()


@pytest.fixture(autouse=True)
def _reset_responder(scripted: ScriptedLLM) -> None:
    scripted.set(default_responder)


@pytest.fixture(scope="session")
def evo_stack(stack, scripted, tmp_path_factory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("evo")
    keys = {"tenant-a": KEY_A, "tenant-b": KEY_B, "tenant-budget": KEY_BUDGET}
    quotas = json.dumps({"tenant-budget": {"llm_tokens_per_day": BUDGET}})
    s = LocalStack.for_tenants(
        root,
        keys,
        embedding_from=stack,
        env={
            "AMEM_EVOLUTION_LLM_BASE_URL": scripted.url,
            "AMEM_QUOTAS": quotas,
            "AMEM_EVOLUTION_QUOTAS": quotas,
            **LLM_ENV,
        },
    )
    try:
        s.start()
        yield s
    finally:
        s.stop()


@pytest.fixture
def evo(evo_stack) -> Iterator[httpx.Client]:
    """A client of tenant A on the evolution stack."""
    with client_for(evo_stack, KEY_A) as c:
        yield c


@pytest.fixture
def evo_b(evo_stack) -> Iterator[httpx.Client]:
    """A client of tenant B on the evolution stack."""
    with client_for(evo_stack, KEY_B) as c:
        yield c


@pytest.fixture
def restart_evolution(evo_stack):
    """Stop the stack's evolution service; the test restarts it as it needs; the default
    service is back afterwards."""
    evo_stack.processes["evolution"].stop()
    yield evo_stack
    for name in [n for n in evo_stack.processes if n.startswith("evolution")]:
        evo_stack.processes.pop(name).stop()
    evo_stack.start_evolution()


def remember(api: httpx.Client, *, wait: bool = True, **fields) -> dict:
    r = api.post("/v1/memories", json=fields, params={"wait": str(wait).lower(), "timeout": 30})
    assert r.status_code == 201, r.text
    return r.json()


def settled(api: httpx.Client, note_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(f"/v1/memories/{note_id}")
        if r.status_code != 503:  # a dependency restarting
            assert r.status_code == 200, r.text
            note = r.json()
            if note["status"] != "pending":
                return note
        assert time.monotonic() < deadline, f"memory {note_id} still pending"
        time.sleep(0.2)
