"""Circuit breakers on the calls to each dependency (ChromaDB, the embedding service, the
evolution service), built on the `circuitbreaker` library.

After `failures` calls in a row fail with `Unavailable` (refused, timed out, 5xx), the breaker
opens: for `reset_s` seconds every call fails at once with `Unavailable` and a Retry-After of
the time left, instead of each request waiting out its own deadline against a dead or hung
peer. Then calls are let through again; the first success closes the breaker, another failure
opens it for another `reset_s`. Nothing needs a restart when the dependency comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from circuitbreaker import CircuitBreaker
from prometheus_client import Counter, Gauge

from amem.core.errors import Unavailable

BREAKER_OPEN = Gauge(
    "amem_circuit_breaker_open",
    "1 while calls to the dependency are refused without being tried.",
    ["dependency"],
)
REJECTED = Counter(
    "amem_circuit_breaker_rejected_total",
    "Calls refused at once because the dependency's breaker was open.",
    ["dependency"],
)


class Breaker:
    def __init__(
        self,
        dependency: str,
        *,
        failures: int = 5,
        reset_s: float = 5.0,
        counts: Callable[[BaseException], bool] = lambda exc: isinstance(exc, Unavailable),
    ) -> None:
        self.dependency = dependency
        self._breaker = CircuitBreaker(
            failure_threshold=failures,
            recovery_timeout=reset_s,
            expected_exception=lambda _type, exc: counts(exc),
            name=dependency,
        )
        BREAKER_OPEN.labels(dependency).set_function(lambda: float(self._breaker.opened))

    @property
    def open(self) -> bool:
        return self._breaker.opened

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Fail at once while open; otherwise run the body and count how it ended."""
        if self._breaker.opened:
            REJECTED.labels(self.dependency).inc()
            remaining = max(1, self._breaker.open_remaining)
            raise Unavailable(
                f"{self.dependency} is failing: calls paused for {remaining}s",
                retry_after=remaining,
            )
        with self._breaker:
            yield
