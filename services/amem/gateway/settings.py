from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from amem.core.settings import CommonSettings


class GatewaySettings(CommonSettings):
    model_config = SettingsConfigDict(env_prefix="AMEM_", extra="ignore")

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    chroma_host: str = "127.0.0.1"
    chroma_port: int = Field(default=8000, ge=1, le=65535)
    chroma_timeout_s: float = Field(default=10.0, gt=0)
    embedding_target: str = "127.0.0.1:50051"
    embedding_timeout_s: float = Field(default=10.0, gt=0)
    # The evolution service (gRPC); unset: notes stay `pending` and history cannot be reverted.
    evolution_target: str | None = None
    # `?wait=true` on writes waits at most this long for the evolution to finish.
    max_wait_s: float = Field(default=60.0, gt=0)
    # The deadline of a change (PATCH) or erasure sent to the tenant's writer, the evolution
    # owner: an erasure of a user's memories re-embeds every neighbour it scrubs.
    edit_timeout_s: float = Field(default=60.0, gt=0)

    # API keys: a JSON object {tenant: key}, where key is the plain key or "sha256:<hex>" of it,
    # given inline (AMEM_API_KEYS) or in a mounted file (AMEM_API_KEYS_FILE). Prefer hashes.
    api_keys: dict[str, str | list[str]] = Field(default_factory=dict)
    api_keys_file: Path | None = None
    # A development key for the tenant "dev" (`make run` sets it); never set in production.
    dev_api_key: str | None = None
    # Admin keys (plain or "sha256:<hex>", a JSON list) for /v1/admin/keys; none: the admin
    # API is off. Managed keys are reloaded from the store this often.
    admin_api_keys: list[str] = Field(default_factory=list)
    # The same list in a mounted file; a missing file means none.
    admin_api_keys_file: Path | None = None
    keys_refresh_s: float = Field(default=5.0, gt=0)
    # Per-key request rate limit(s) in each replica, e.g. "100/second;2000/minute"; "" for none.
    rate_limit: str = "100/second"
    # Per-tenant quotas as JSON (core/quotas.py); the gateway enforces `notes`.
    quotas: str = ""

    # Hybrid search: reciprocal rank fusion of the dense and BM25 rankings, each asked for
    # max(4k, search_candidates) candidates (at most 4 * max_k). A smaller rrf_k favours the
    # top of each ranking.
    rrf_k: int = Field(default=20, ge=1)
    search_candidates: int = Field(default=50, ge=1, le=1000)
    # The gateway's BM25 index (a cache of the store): how often a search pulls changes made
    # by other processes, how far back a pull reaches, and how many notes it holds at most.
    lexical_refresh_s: float = Field(default=1.0, ge=0)
    lexical_margin_s: float = Field(default=30.0, ge=0)
    lexical_max_notes: int = Field(default=2_000_000, ge=1)
    # The deadline of the BM25 index's own ChromaDB reads (a separate client and circuit
    # breaker): background work, whose id listings grow with the tenant, so not bound by the
    # request path's `chroma_timeout_s`.
    lexical_timeout_s: float = Field(default=60.0, gt=0)

    # Searches count retrievals in memory and write them to the store this often. Each flush
    # rewrites every note retrieved since the last one: at 1 s, a 100k-note tenant searched at
    # C = 1 on 2 cores had its search p99 at 60-80 ms (flushes of ~500 notes a second competing
    # with searches for ChromaDB); at 10 s, 19 ms (dense) and 33 ms (hybrid).
    access_flush_s: float = Field(default=10.0, gt=0)

    # Limits.
    max_body_bytes: int = Field(default=1 << 20, ge=1024)
    max_batch: int = Field(default=100, ge=1, le=1000)
    max_k: int = Field(default=100, ge=1, le=1000)
    max_page_size: int = Field(default=500, ge=1)
    max_link_depth: int = Field(default=3, ge=1, le=10)
    # Memories in one /links answer, and linked memories added by one include_links search:
    # 300 notes of 16 kB made 4.5 MB answers and doubled the gateway's memory.
    max_link_memories: int = Field(default=100, ge=1, le=1000)
    # A request body that stalls this long between two chunks gets 408 (a false Content-Length
    # held a connection open for good), and request heads over `max_header_bytes` get 431
    # before any of it reaches the app (the key check included).
    body_timeout_s: float = Field(default=30.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("quotas")
    @classmethod
    def _valid_quotas(cls, value: str) -> str:
        from amem.core.quotas import Quotas

        Quotas.parse(value)
        return value

    @field_validator("rate_limit")
    @classmethod
    def _parse_rate_limit(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            parse_many(value)  # ValueError names what it could not read
        return value

    def all_admin_keys(self) -> list[str]:
        keys = list(self.admin_api_keys)
        if self.admin_api_keys_file is not None and self.admin_api_keys_file.is_file():
            keys += json.loads(self.admin_api_keys_file.read_text())
        return keys

    def all_api_keys(self) -> dict[str, list[str]]:
        """Every configured key (plain or sha256:hex) by tenant."""
        keys: dict[str, list[str]] = {}

        def add(source: dict[str, str | list[str]]) -> None:
            for tenant, value in source.items():
                keys.setdefault(tenant, []).extend([value] if isinstance(value, str) else value)

        add(self.api_keys)
        if self.api_keys_file is not None:
            add(json.loads(self.api_keys_file.read_text()))
        if self.dev_api_key:
            add({"dev": self.dev_api_key})
        return keys
