"""Client adapter for the embedding service: owns its channel, retries UNAVAILABLE with
backoff (gRPC's own retry policy), puts a deadline on every call, stops calling for a while
when the service keeps failing (a circuit breaker) and turns status codes into domain errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from amem.core import grpc_client
from amem.core.breaker import Breaker
from amem.core.errors import AmemError
from amem.embedding.v1 import embedding_pb2, embedding_pb2_grpc

_SERVICE = "amem.embedding.v1.EmbeddingService"

# Embedding is idempotent, so a call that found no live server can safely be retried.
_SERVICE_CONFIG: dict[str, Any] = {
    # Spread calls over every address the name resolves to (a headless Service in k8s).
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": _SERVICE}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


@dataclass(frozen=True)
class EmbedResult:
    vectors: list[list[float]]
    truncated: list[bool]
    token_counts: list[int]
    model: str = ""  # the model that wrote the vectors


class EmbeddingClient:
    def __init__(self, target: str, *, timeout_s: float = 10.0) -> None:
        self._timeout = timeout_s
        self._breaker = Breaker("embedding")
        self._channel = grpc_client.channel(
            target,
            peer="embedding service",
            service_config=_SERVICE_CONFIG,
            options=[("grpc.keepalive_time_ms", 30_000)],
        )
        self._stub = embedding_pb2_grpc.EmbeddingServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        # The model of the last answer: what vectors cached by their text belong to.
        self.model: str | None = None

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> EmbedResult:
        """Vectors for `texts`; `background` for work nobody waits on (served after the rest)."""
        priority = embedding_pb2.PRIORITY_BACKGROUND if background else 0
        with self._breaker.guard():
            reply = await self._stub.Embed(
                embedding_pb2.EmbedRequest(texts=list(texts), priority=priority),
                timeout=self._timeout,
            )
        self.model = reply.model
        return EmbedResult(
            vectors=[list(e.values) for e in reply.embeddings],
            truncated=[e.truncated for e in reply.embeddings],
            token_counts=[e.token_count for e in reply.embeddings],
            model=reply.model,
        )

    async def model_info(self) -> embedding_pb2.ModelInfo:
        return await self._stub.GetModelInfo(
            embedding_pb2.GetModelInfoRequest(), timeout=self._timeout
        )

    async def is_serving(self, timeout_s: float = 1.0) -> bool:
        try:
            reply = await self._health.Check(
                health_pb2.HealthCheckRequest(service=_SERVICE), timeout=timeout_s
            )
        except AmemError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    async def close(self) -> None:
        await self._channel.close()
