"""Per-key rate limits (the `limits` library's moving window, in this replica's memory).

`AMEM_RATE_LIMIT` takes one or more limits, e.g. `100/second;2000/minute`; a request over any
of them gets 429 with Retry-After. Each gateway replica counts on its own, so with N replicas
behind a round-robin load balancer a key gets up to N times the limit.
"""

from __future__ import annotations

import math
import time

from limits import parse_many
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

from amem.core.errors import RateLimited

LIMITED = Counter("amem_gateway_rate_limited_total", "Requests refused with 429 by the rate limit.")


class RateLimiter:
    def __init__(self, spec: str) -> None:
        self._items = parse_many(spec) if spec.strip() else []
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def check(self, key_id: str) -> None:
        for item in self._items:
            if not await self._limiter.hit(item, key_id):
                stats = await self._limiter.get_window_stats(item, key_id)
                LIMITED.inc()
                raise RateLimited(
                    f"rate limit of {item} exceeded for this API key",
                    retry_after=max(1, math.ceil(stats.reset_time - time.time())),
                )
