"""API keys: each key belongs to one tenant; keys are kept and compared only as SHA-256 hashes.

Keys come from two places. Configured keys (`AMEM_API_KEYS`, a mounted file) never change
while the gateway runs. Managed keys are created, listed, rotated and revoked through the
admin API (`/v1/admin/keys`, `amem keys ...`) and live in ChromaDB (collection
`amemsys-api-keys`: hash, tenant, name, times; never the key itself), so every gateway replica
sees them: each reloads them every `AMEM_KEYS_REFRESH_S`, and at once (at most once a second)
when it meets a key it does not know, so a new key works on every replica straight away and a
revoked one stops working everywhere within the refresh interval (on the replica that revoked
it, at once). Rotation issues a new key and lets the old one expire after a grace period, so
clients can switch over without downtime.

A key of 128+ bits of entropy needs no slow hash: SHA-256 is not reversible for it, and looking
a hash up in a dict leaks nothing an attacker can use, since they cannot choose the hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from amem.core.errors import NotFound, PermissionDenied, Unauthenticated
from amem.core.model import TENANT_PATTERN, utcnow
from amem.core.store import API_KEYS_COLLECTION, ManagedKey, SystemCollection

log = logging.getLogger(__name__)

_HASHED = re.compile(r"^sha256:([0-9a-f]{64})$")
KEY_PREFIX = "amem_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _digest(key: str) -> str:
    """The hash of a configured key given plain or as `sha256:<hex>`."""
    m = _HASHED.match(key)
    return m.group(1) if m else hash_key(key)


class KeyStore:
    """Managed keys in ChromaDB: one record per key, by id."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 10.0) -> None:
        self._records = SystemCollection(API_KEYS_COLLECTION, host, port, timeout_s=timeout_s)

    async def all(self) -> list[ManagedKey]:
        return [ManagedKey.of(i, m) for i, m in (await self._records.get()).items()]

    async def put(self, key: ManagedKey) -> None:
        await self._records.put({key.id: key.metadata()})


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str  # the managed key's id, or "config:<hash prefix>" for a configured key


class KeyRing:
    def __init__(
        self,
        keys_by_tenant: dict[str, list[str]],
        *,
        admin_keys: list[str] | None = None,
        store: KeyStore | None = None,
        refresh_s: float = 5.0,
    ) -> None:
        self._static: dict[str, str] = {}
        for tenant, keys in keys_by_tenant.items():
            if not re.match(TENANT_PATTERN, tenant):
                raise ValueError(f"tenant id {tenant!r} must match {TENANT_PATTERN}")
            for key in keys:
                digest = _digest(key)
                other = self._static.setdefault(digest, tenant)
                if other != tenant:
                    raise ValueError(
                        f"one API key is configured for tenants {other!r} and {tenant!r}"
                    )
        self._admin = {_digest(k) for k in admin_keys or ()}
        if self._admin & self._static.keys():
            raise ValueError("an admin key must not also be a tenant's API key")
        self._store = store
        self._refresh_s = refresh_s
        self._managed: dict[str, ManagedKey] = {}  # by hash
        self._by_id: dict[str, ManagedKey] = {}
        self._loaded_at = 0.0
        self._missed_at = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._static) + len(self._managed)

    @property
    def admin_enabled(self) -> bool:
        return bool(self._admin) and self._store is not None

    def start(self) -> None:
        if self._store is not None:
            self._task = asyncio.create_task(self._refresh_forever(), name="keyring-refresh")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving the keys we have
                log.warning("reloading managed API keys failed: %s", exc)
            await asyncio.sleep(self._refresh_s)

    async def refresh(self, *, min_age_s: float = 0.0) -> None:
        """Reload managed keys, unless they were loaded less than `min_age_s` ago."""
        if self._store is None:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at < min_age_s:
                return
            keys = await self._store.all()
            self._by_id = {k.id: k for k in keys}
            self._managed = {k.hash: k for k in keys}
            self._loaded_at = time.monotonic()

    async def caller(self, key: str | None) -> Caller:
        if not key:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        digest = hash_key(key)
        tenant = self._static.get(digest)
        if tenant is not None:
            return Caller(tenant, f"config:{digest[:12]}")
        managed = self._managed.get(digest)
        if (
            managed is None
            and self._store is not None
            and key.startswith(KEY_PREFIX)
            and time.monotonic() - self._missed_at >= 1.0
        ):
            # Perhaps created on another replica a moment ago. At most once a second, so that
            # a flood of made-up keys costs the store one read a second.
            self._missed_at = time.monotonic()
            await self.refresh()
            managed = self._managed.get(digest)
        if managed is None or not managed.valid(utcnow()):
            raise Unauthenticated("invalid API key")
        return Caller(managed.tenant, managed.id)

    def check_admin(self, key: str | None) -> None:
        if not self.admin_enabled:
            raise PermissionDenied("the admin API is off: set AMEM_ADMIN_API_KEYS to turn it on")
        if not key:
            raise Unauthenticated("missing admin key: send 'Authorization: Bearer <admin key>'")
        if hash_key(key) not in self._admin:
            raise PermissionDenied("not an admin key")

    # Key management (admin API).

    def list(self, tenant: str | None = None, *, include_revoked: bool = False) -> list[ManagedKey]:
        keys = sorted(self._by_id.values(), key=lambda k: k.created_at)
        return [
            k
            for k in keys
            if (tenant is None or k.tenant == tenant) and (include_revoked or k.revoked_at is None)
        ]

    async def create(
        self, tenant: str, name: str, *, expires_in: timedelta | None = None
    ) -> tuple[ManagedKey, str]:
        """A new key for `tenant`: its record, and the key itself (shown once, never stored)."""
        assert self._store is not None
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        record = ManagedKey(
            id="key_" + secrets.token_hex(8),
            tenant=tenant,
            name=name,
            hash=hash_key(secret),
            created_at=now,
            expires_at=now + expires_in if expires_in else None,
        )
        await self._store.put(record)
        self._remember(record)
        return record, secret

    async def get(self, key_id: str) -> ManagedKey:
        await self.refresh()  # admin calls are rare: read the store, not this replica's copy
        record = self._by_id.get(key_id)
        if record is None:
            raise NotFound(f"no API key {key_id!r}")
        return record

    async def revoke(self, key_id: str) -> ManagedKey:
        record = await self.get(key_id)
        if record.revoked_at is None:
            record = ManagedKey(**{**record.__dict__, "revoked_at": utcnow()})
            await self._store.put(record)
            self._remember(record)
        return record

    async def rotate(self, key_id: str, grace: timedelta) -> tuple[ManagedKey, str]:
        """A new key for the same tenant and name; the old one expires after `grace`."""
        old = await self.get(key_id)
        if not old.valid(utcnow()):
            raise NotFound(f"API key {key_id!r} is revoked or expired")
        expires_in = old.expires_at - utcnow() if old.expires_at else None
        new, secret = await self.create(old.tenant, old.name, expires_in=expires_in)
        ends = utcnow() + grace
        if old.expires_at is None or ends < old.expires_at:
            old = ManagedKey(**{**old.__dict__, "expires_at": ends})
            await self._store.put(old)
            self._remember(old)
        return new, secret

    def _remember(self, record: ManagedKey) -> None:
        self._by_id[record.id] = record
        self._managed[record.hash] = record
