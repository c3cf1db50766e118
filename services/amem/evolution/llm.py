"""LLM backends behind one small interface, and the factory that picks one by name.

Each backend bounds every call in time, limits concurrent calls, retries 429s, 5xx, timeouts
and connection errors with backoff (honouring Retry-After), and treats a reply that is not
valid JSON for the schema (a truncated or rambling answer) as a retryable failure, never as
data. Token usage is counted per tenant and model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from amem.core import tracing
from amem.evolution.prompts import SYSTEM
from amem.evolution.settings import EvolutionSettings, LLMBackendName

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

LLM_SECONDS = Histogram(
    "amem_llm_request_seconds",
    "LLM call latency (one attempt), by backend, model and outcome.",
    ["backend", "model", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128),
)
LLM_RETRIES = Counter(
    "amem_llm_retries_total", "LLM attempts that failed and were retried, by reason.", ["reason"]
)
LLM_TOKENS = Counter(
    "amem_llm_tokens_total",
    "LLM tokens spent, by tenant, model and kind (prompt or completion).",
    ["tenant", "model", "kind"],
)


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


class LLMError(Exception):
    """The LLM could not give a usable answer (after retries, or a non-retryable refusal)."""


class RetryableLLMError(LLMError):
    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


class LLM(Protocol):
    backend: str
    model: str

    async def generate(
        self, prompt: str, reply: type[T], schema: dict[str, Any], *, tenant: str
    ) -> tuple[T, Usage]: ...


def _parse(text: str | None, reply: type[T]) -> T:
    if not text:
        raise RetryableLLMError("empty", "the LLM returned no content")
    try:
        return reply.model_validate_json(text)
    except ValidationError as exc:
        # Truncated JSON, prose around it, or values outside the schema's bounds.
        raise RetryableLLMError("invalid_json", f"invalid reply: {exc.errors()[:3]}") from exc


def _wait(base: wait_exponential_jitter):
    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableLLMError) and exc.retry_after is not None:
            return min(exc.retry_after, 60.0)
        return base(state)

    return wait


class _Base:
    backend = "base"

    def __init__(self, settings: EvolutionSettings) -> None:
        self.model = settings.llm_model
        self._settings = settings
        self._limit = asyncio.Semaphore(settings.llm_max_concurrency)

    async def _attempt(
        self, prompt: str, reply: type[T], schema: dict[str, Any], temperature: float
    ) -> tuple[T, Usage]:
        raise NotImplementedError

    def _temperature(self, attempt: int) -> float:
        """The configured temperature first; then more, so that a retry of a model that
        rambled or broke the schema does not deterministically produce the same reply."""
        base = self._settings.llm_temperature
        return base if attempt == 1 else min(1.0, max(base, 0.3) + 0.2 * (attempt - 2))

    async def generate(
        self, prompt: str, reply: type[T], schema: dict[str, Any], *, tenant: str
    ) -> tuple[T, Usage]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.llm_max_attempts),
            wait=_wait(wait_exponential_jitter(initial=0.5, max=20)),
            retry=retry_if_exception_type(RetryableLLMError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                started = time.perf_counter()
                outcome = "ok"
                try:
                    async with self._limit:
                        with tracing.span(
                            "llm.generate",
                            **{"gen_ai.system": self.backend, "gen_ai.request.model": self.model},
                        ) as span:
                            parsed, usage = await self._attempt(
                                prompt,
                                reply,
                                schema,
                                self._temperature(attempt.retry_state.attempt_number),
                            )
                            span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
                            span.set_attribute(
                                "gen_ai.usage.output_tokens", usage.completion_tokens
                            )
                except RetryableLLMError as exc:
                    outcome = exc.reason
                    LLM_RETRIES.labels(exc.reason).inc()
                    log.info("LLM attempt %d failed: %s", attempt.retry_state.attempt_number, exc)
                    raise
                finally:
                    LLM_SECONDS.labels(self.backend, self.model, outcome).observe(
                        time.perf_counter() - started
                    )
                LLM_TOKENS.labels(tenant, self.model, "prompt").inc(usage.prompt_tokens)
                LLM_TOKENS.labels(tenant, self.model, "completion").inc(usage.completion_tokens)
                return parsed, usage
        raise AssertionError("unreachable")


class OpenAILLM(_Base):
    """OpenAI, or any server speaking its chat completions API (vLLM, llama.cpp's server)."""

    backend = "openai"

    def __init__(self, settings: EvolutionSettings) -> None:
        super().__init__(settings)
        import openai

        self._openai = openai
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "unused"
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=settings.llm_base_url,
            timeout=settings.llm_timeout_s,
            max_retries=0,  # retries are ours, so that bad JSON is retried the same way
        )

    async def _attempt(self, prompt, reply, schema, temperature):
        openai = self._openai
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": prompt},
                ],
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": reply.__name__, "schema": schema, "strict": False},
                },
                max_tokens=self._settings.llm_max_tokens,
                temperature=temperature,
            )
        except openai.APIStatusError as exc:
            if exc.status_code == 429 or exc.status_code >= 500:
                retry_after = exc.response.headers.get("retry-after")
                raise RetryableLLMError(
                    f"http_{exc.status_code}",
                    f"LLM answered {exc.status_code}",
                    float(retry_after) if retry_after and retry_after.isdigit() else None,
                ) from exc
            raise LLMError(f"LLM refused the request ({exc.status_code}): {exc.message}") from exc
        except openai.APITimeoutError as exc:
            raise RetryableLLMError("timeout", "LLM call timed out") from exc
        except openai.APIConnectionError as exc:
            raise RetryableLLMError("connection", f"LLM unreachable: {exc}") from exc
        if not response.choices:
            raise RetryableLLMError("empty", "the LLM returned no choices")
        choice = response.choices[0]
        if choice.finish_reason == "length":
            raise RetryableLLMError("truncated", "the LLM reply hit max_tokens")
        usage = Usage(
            response.usage.prompt_tokens if response.usage else 0,
            response.usage.completion_tokens if response.usage else 0,
        )
        return _parse(choice.message.content, reply), usage


class OllamaLLM(_Base):
    """An Ollama server, with structured output through its `format` schema."""

    backend = "ollama"

    def __init__(self, settings: EvolutionSettings) -> None:
        super().__init__(settings)
        import ollama

        self._ollama = ollama
        self._client = ollama.AsyncClient(host=settings.ollama_host, timeout=settings.llm_timeout_s)

    async def _attempt(self, prompt, reply, schema, temperature):
        ollama = self._ollama
        import httpx

        try:
            response = await self._client.chat(
                model=self.model,
                messages=[
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": prompt},
                ],
                format=schema,
                options={
                    "num_predict": self._settings.llm_max_tokens,
                    "temperature": temperature,
                },
            )
        except ollama.ResponseError as exc:
            if exc.status_code == 429 or exc.status_code >= 500:
                raise RetryableLLMError(f"http_{exc.status_code}", str(exc)) from exc
            raise LLMError(f"Ollama refused the request ({exc.status_code}): {exc}") from exc
        except httpx.TimeoutException as exc:
            raise RetryableLLMError("timeout", "LLM call timed out") from exc
        except (httpx.TransportError, ConnectionError) as exc:
            raise RetryableLLMError("connection", f"Ollama unreachable: {exc}") from exc
        if response.done_reason == "length":
            raise RetryableLLMError("truncated", "the LLM reply hit num_predict")
        usage = Usage(response.prompt_eval_count or 0, response.eval_count or 0)
        return _parse(response.message.content, reply), usage


def make_llm(settings: EvolutionSettings) -> LLM | None:
    """The configured LLM, or None for the offline (LLM-free) backend."""
    backend = settings.resolved_backend()
    factories = {
        LLMBackendName.OPENAI: OpenAILLM,
        LLMBackendName.OLLAMA: OllamaLLM,
        LLMBackendName.OFFLINE: None,
    }
    factory = factories[backend]
    return factory(settings) if factory else None


def schema_of(reply: type[BaseModel]) -> dict[str, Any]:
    return json.loads(json.dumps(reply.model_json_schema()))
