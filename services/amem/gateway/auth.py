"""API keys: each key belongs to one tenant; keys are kept and compared only as SHA-256 hashes.

A key of 128+ bits of entropy needs no slow hash: SHA-256 is not reversible for it, and looking
a hash up in a dict leaks nothing an attacker can use, since they cannot choose the hash.
"""

from __future__ import annotations

import hashlib
import re

from amem.core.errors import Unauthenticated
from amem.gateway.settings import TENANT_PATTERN

_HASHED = re.compile(r"^sha256:([0-9a-f]{64})$")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    def __init__(self, keys_by_tenant: dict[str, list[str]]) -> None:
        self._tenant_by_hash: dict[str, str] = {}
        for tenant, keys in keys_by_tenant.items():
            if not re.match(TENANT_PATTERN, tenant):
                raise ValueError(f"tenant id {tenant!r} must match {TENANT_PATTERN}")
            for key in keys:
                m = _HASHED.match(key)
                digest = m.group(1) if m else hash_key(key)
                other = self._tenant_by_hash.setdefault(digest, tenant)
                if other != tenant:
                    raise ValueError(
                        f"one API key is configured for tenants {other!r} and {tenant!r}"
                    )

    def __len__(self) -> int:
        return len(self._tenant_by_hash)

    def tenant_for(self, key: str | None) -> str:
        if not key:
            raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
        tenant = self._tenant_by_hash.get(hash_key(key))
        if tenant is None:
            raise Unauthenticated("invalid API key")
        return tenant
