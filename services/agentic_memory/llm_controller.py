"""A-mem's LLM controllers, for code that uses them directly: `AgenticMemorySystem` does not
(amem's evolution service has its own LLM, configured on the server). The OpenAI and Ollama
clients are imported when a controller is made (`amem[evolution]` has both)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any


class BaseLLMController(ABC):
    @abstractmethod
    def get_completion(
        self, prompt: str, response_format: dict | None = None, temperature: float = 0.7
    ) -> str:
        """The model's reply to `prompt` (JSON when `response_format` asks for it)."""


class OpenAIController(BaseLLMController):
    def __init__(self, model: str = "gpt-4", api_key: str | None = None) -> None:
        from openai import OpenAI

        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ValueError("OpenAI API key not found: pass api_key or set OPENAI_API_KEY")
        self.model = model
        self.client = OpenAI(api_key=key)

    def get_completion(
        self, prompt: str, response_format: dict | None = None, temperature: float = 0.7
    ) -> str:
        extra: dict[str, Any] = {"response_format": response_format} if response_format else {}
        reply = self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            temperature=temperature,
            **extra,
        )
        return reply.choices[0].message.content or ""


class OllamaController(BaseLLMController):
    def __init__(self, model: str = "llama2") -> None:
        import ollama

        self.model = model
        self._ollama = ollama

    def get_completion(
        self, prompt: str, response_format: dict | None = None, temperature: float = 0.7
    ) -> str:
        reply = self._ollama.chat(
            model=self.model,
            messages=[{"role": "user", "content": prompt}],
            format="json" if response_format else None,
            options={"temperature": temperature},
        )
        return reply["message"]["content"]


class LLMController:
    def __init__(self, backend: str = "openai", model: str = "gpt-4", api_key: str | None = None):
        if backend == "openai":
            self.llm: BaseLLMController = OpenAIController(model, api_key)
        elif backend == "ollama":
            self.llm = OllamaController(model)
        else:
            raise ValueError("backend must be 'openai' or 'ollama'")

    def get_completion(
        self, prompt: str, response_format: dict | None = None, temperature: float = 0.7
    ) -> str:
        return self.llm.get_completion(prompt, response_format, temperature)
