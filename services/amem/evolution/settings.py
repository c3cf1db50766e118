from __future__ import annotations

import os
import re
from enum import StrEnum
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from amem.core.settings import CommonSettings


class LLMBackendName(StrEnum):
    AUTO = "auto"  # openai when an API key or base URL is configured, else offline
    OFFLINE = "offline"  # no LLM: extractive keywords, similarity links, no rewrites
    OPENAI = "openai"  # OpenAI or any OpenAI-compatible server (vLLM, llama-server)
    OLLAMA = "ollama"


class EvolutionSettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="AMEM_EVOLUTION_", extra="ignore")

    listen: str = "[::]:50052"
    metrics_port: int = Field(default=9102, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    chroma_host: str = "127.0.0.1"
    chroma_port: int = Field(default=8000, ge=1, le=65535)
    chroma_timeout_s: float = Field(default=10.0, gt=0)
    embedding_target: str = "127.0.0.1:50051"
    embedding_timeout_s: float = Field(default=10.0, gt=0)

    # Replicas: each tenant is owned by exactly one replica (rendezvous hashing over the
    # replica indices), which serialises that tenant's evolutions. `peers` lists every
    # replica's gRPC address in index order; empty means a single replica.
    peers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # This replica's index in `peers`; unset: the trailing number of the host name (the
    # StatefulSet ordinal, e.g. amem-evolution-2), else 0.
    replica_index: int | None = Field(default=None, ge=0)
    # Kubernetes: find the replicas through a StatefulSet's headless Service instead of `peers`
    # (its DNS name, the pods' name prefix and their gRPC port).
    peers_dns: str | None = None
    peers_pod_prefix: str = "amem-evolution"
    peers_port: int = Field(default=50052, ge=1, le=65535)
    peers_refresh_s: float = Field(default=10.0, gt=0)

    # How often to look for pending notes nobody told us about (after a crash, a lost Notify).
    scan_interval_s: float = Field(default=10.0, gt=0)
    # The sampled audit of the vector index (evolution/auditor.py): this often (0: off), this
    # many notes of each owned tenant.
    audit_interval_s: float = Field(default=900.0, ge=0)
    audit_sample: int = Field(default=20, ge=1, le=1000)
    # Neighbours shown to the LLM for linking and evolution.
    neighbours: int = Field(default=5, ge=1, le=20)
    # The offline backend links to neighbours at least this similar (cosine).
    offline_link_threshold: float = Field(default=0.5, ge=-1, le=1)
    # Per-tenant quotas as JSON (core/quotas.py); evolution enforces `llm_tokens_per_day`.
    quotas: str = ""

    @field_validator("quotas")
    @classmethod
    def _valid_quotas(cls, value: str) -> str:
        from amem.core.quotas import Quotas

        Quotas.parse(value)  # refuse to start on a bad value
        return value

    # LLM backend.
    llm_backend: LLMBackendName = LLMBackendName.AUTO
    llm_model: str = "gpt-4o-mini"
    # OpenAI-compatible endpoint; unset: OpenAI itself.
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    ollama_host: str = "http://127.0.0.1:11434"
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_attempts: int = Field(default=4, ge=1, le=10)
    llm_max_concurrency: int = Field(default=4, ge=1)
    llm_max_tokens: int = Field(default=768, ge=16)
    llm_temperature: float = Field(default=0.0, ge=0, le=2)

    shutdown_grace_s: float = Field(default=10.0, ge=0)

    @field_validator("peers", mode="before")
    @classmethod
    def _split_peers(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    def resolved_replica_index(self) -> int:
        if self.replica_index is not None:
            index = self.replica_index
        else:
            m = re.search(r"-(\d+)$", os.environ.get("HOSTNAME", ""))
            index = int(m.group(1)) if m and (self.peers or self.peers_dns) else 0
        if self.peers and index >= len(self.peers):
            raise ValueError(f"replica index {index} is outside peers ({len(self.peers)})")
        return index

    def resolved_backend(self) -> LLMBackendName:
        if self.llm_backend is not LLMBackendName.AUTO:
            return self.llm_backend
        if self.llm_api_key is not None or self.llm_base_url:
            return LLMBackendName.OPENAI
        return LLMBackendName.OFFLINE
