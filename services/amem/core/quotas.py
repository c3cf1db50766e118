"""Per-tenant quotas, and the LLM token usage they are checked against.

`AMEM_QUOTAS` (the gateway) and `AMEM_EVOLUTION_QUOTAS` (the evolution service; the chart sets
both from one value) hold JSON: limits under `"default"` apply to every tenant, and a tenant's
own entry overrides them field by field, e.g.

    {"default": {"notes": 100000, "llm_tokens_per_day": 2000000},
     "acme": {"llm_tokens_per_day": 10000000}}

- `notes`: the most memories a tenant may hold; a write beyond it is refused with
  `403 quota_exceeded` (the gateway counts before it writes).
- `llm_tokens_per_day`: prompt plus completion tokens evolution may spend on the tenant per
  UTC day. Once spent, the degrade mode: notes are still stored, embedded and searchable, but
  stay `pending` (with a `status_reason` saying why) until the next UTC day, when evolution
  resumes by itself. The offline backend spends no tokens.

Usage is counted per tenant and UTC day in ChromaDB (`amemsys-usage`), by the evolution
replica that owns the tenant, so it survives restarts and `GET /v1/usage` can show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from amem.core.model import utcnow
from amem.core.store.system import (
    USAGE_COLLECTION,
    SystemCollection,
    usage_id,
    usage_record,
    usage_tokens,
)


class Quota(BaseModel):
    model_config = ConfigDict(extra="forbid")

    notes: int | None = Field(default=None, ge=1)
    llm_tokens_per_day: int | None = Field(default=None, ge=0)


class Quotas(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: Quota = Field(default_factory=Quota)
    tenants: dict[str, Quota] = Field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | dict | None) -> Quotas:
        data = json.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or {})
        if not isinstance(data, dict):
            raise ValueError("quotas must be a JSON object of tenant -> limits")
        default = data.get("default", {})
        return cls(
            default=Quota.model_validate(default),
            tenants={t: Quota.model_validate(q) for t, q in data.items() if t != "default"},
        )

    def for_tenant(self, tenant: str) -> Quota:
        own = self.tenants.get(tenant)
        if own is None:
            return self.default
        return Quota(
            **{**self.default.model_dump(), **own.model_dump(exclude_unset=True)},
        )


@dataclass(frozen=True)
class TenantUsage:
    """What a tenant holds and has spent on a UTC day, against its quotas (None: no limit)."""

    tenant: str
    notes: int
    notes_quota: int | None
    day: date
    llm_tokens: int
    llm_tokens_per_day: int | None


def today() -> date:
    return utcnow().date()


def next_day_start(day: date) -> datetime:
    from datetime import UTC, time, timedelta

    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


class UsageStore:
    """LLM tokens spent per tenant and UTC day (record id `<tenant>:<YYYY-MM-DD>`)."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 10.0) -> None:
        self._records = SystemCollection(USAGE_COLLECTION, host, port, timeout_s=timeout_s)
        self._cache: dict[str, int] = {}

    async def tokens(self, tenant: str, day: date) -> int:
        key = usage_id(tenant, day)
        if key not in self._cache:
            got = await self._records.get([key])
            self._cache[key] = usage_tokens(got.get(key))
        return self._cache[key]

    async def add(self, tenant: str, day: date, tokens: int) -> int:
        """Count `tokens` more; returns the day's total. The tenant's owning replica is the only
        writer, so read-add-write is safe (an ownership change may lose one note's count)."""
        total = await self.tokens(tenant, day) + tokens
        key = usage_id(tenant, day)
        await self._records.put({key: usage_record(tenant, day, total)})
        self._cache[key] = total
        return total

    async def fresh_tokens(self, tenant: str, day: date) -> int:
        """The day's total as stored (for readers other than the owner, e.g. the gateway)."""
        self._cache.pop(usage_id(tenant, day), None)
        return await self.tokens(tenant, day)


class DailyBudget:
    """Each tenant's daily LLM token budget, as the evolution owner enforces it: over it, the
    tenant's notes stay pending until the next UTC day."""

    def __init__(self, quotas: Quotas, usage: UsageStore) -> None:
        self._quotas = quotas
        self._usage = usage
        self._spent: dict[str, date] = {}  # tenants whose budget for that day is spent

    async def refusal(self, tenant: str) -> str | None:
        """Why `tenant` may not spend LLM tokens today, or None."""
        budget = self._quotas.for_tenant(tenant).llm_tokens_per_day
        if budget is None:
            return None
        day = today()
        spent = await self._usage.tokens(tenant, day)
        if spent < budget:
            self._spent.pop(tenant, None)
            return None
        self._spent[tenant] = day
        return (
            f"deferred: the LLM budget of {budget} tokens for {day.isoformat()} is spent; "
            f"evolution resumes after {next_day_start(day).isoformat()}"
        )

    def spent_today(self, tenant: str) -> bool:
        """Whether `refusal` found the tenant's budget spent today (no need to ask again)."""
        return self._spent.get(tenant) == today()

    async def spend(self, tenant: str, tokens: int) -> None:
        if tokens:
            await self._usage.add(tenant, today(), tokens)
