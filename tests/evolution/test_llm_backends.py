"""Each LLM backend over real HTTP against the scripted fake: request shapes, usage, retries,
and replies that must never be taken as data. (The OpenAI shapes are exercised end to end in
test_evolution.py; Ollama's only here, against its documented /api/chat shapes.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from amem.evolution.llm import LLMError, OllamaLLM, OpenAILLM
from amem.evolution.prompts import Construction, Evolution, evolution_schema
from amem.evolution.settings import EvolutionSettings
from tests.scripted_llm import Reply, ScriptedLLM, answer

GOOD = {"keywords": ["k"], "context": "c", "tags": ["t"]}


@pytest.fixture
def fake():
    llm = ScriptedLLM(lambda request: answer(GOOD))
    yield llm
    llm.close()


def _backend(kind: str, fake: ScriptedLLM):
    settings = EvolutionSettings(
        llm_backend=kind,
        llm_model="m",
        llm_base_url=fake.url,
        ollama_host=fake.base,
        llm_timeout_s=1,
        llm_max_attempts=3,
    )
    return OpenAILLM(settings) if kind == "openai" else OllamaLLM(settings)


def _generate(llm, reply=Construction, schema=None):
    return asyncio.run(
        llm.generate("prompt", reply, schema or reply.model_json_schema(), tenant="t")
    )


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_request_shape_and_usage(kind, fake):
    schema = evolution_schema(2)
    fake.set(
        lambda request: Reply(
            content='{"links": ["m1"], "tags": [], "neighbour_updates": []}',
            prompt_tokens=11,
            completion_tokens=7,
        )
    )
    parsed, usage = _generate(_backend(kind, fake), Evolution, schema)
    assert parsed.links == ["m1"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (11, 7)
    [request] = fake.requests
    assert request["model"] == "m"
    assert [m["role"] for m in request["messages"]] == ["system", "user"]
    if kind == "openai":
        assert request["response_format"]["type"] == "json_schema"
        sent = request["response_format"]["json_schema"]["schema"]
        assert request["max_tokens"] == 768
    else:
        sent = request["format"]
        assert request["stream"] is False
        assert request["options"]["num_predict"] == 768
    assert sent["properties"]["links"]["items"]["enum"] == ["m1", "m2"]


@pytest.mark.parametrize("kind", ["openai", "ollama"])
@pytest.mark.parametrize(
    "bad",
    [
        Reply(status=500),
        Reply(content="{not json"),
        Reply(content='{"keywords": []}'),
        Reply(content='{"keywords": ["k"], "con', finish_reason="length"),
    ],
    ids=["500", "garbage", "schema-violation", "truncated"],
)
def test_bad_replies_are_retried_never_used(kind, bad, fake):
    calls = []

    def responder(request):
        calls.append(request)
        return bad if len(calls) == 1 else answer(GOOD)

    fake.set(responder)
    parsed, _ = _generate(_backend(kind, fake))
    assert parsed.context == "c" and len(calls) == 2


def test_retry_after_is_honoured(fake):
    calls = []

    def responder(request):
        calls.append(time.monotonic())
        return Reply(status=429, headers={"Retry-After": "2"}) if len(calls) == 1 else answer(GOOD)

    fake.set(responder)
    _generate(_backend("openai", fake))
    assert calls[1] - calls[0] >= 1.9


@pytest.mark.parametrize("kind", ["openai", "ollama"])
def test_gives_up_after_max_attempts(kind, fake):
    fake.set(lambda request: Reply(content="never json"))
    with pytest.raises(LLMError):
        _generate(_backend(kind, fake))
    assert len(fake.requests) == 3


def test_client_errors_are_not_retried(fake):
    fake.set(lambda request: Reply(status=401))
    with pytest.raises(LLMError, match="401"):
        _generate(_backend("openai", fake))
    assert len(fake.requests) == 1
