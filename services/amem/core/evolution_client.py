"""Client adapter for the evolution service (used by the gateway, and by replicas to forward
work to a tenant's owner)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc

from amem.core import tracing
from amem.core.breaker import Breaker
from amem.core.errors import from_grpc_code
from amem.evolution.v1 import evolution_pb2, evolution_pb2_grpc

_SERVICE = "amem.evolution.v1.EvolutionService"
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                # Notify only queues work that the owner's scan would find anyway: safe to retry.
                "name": [{"service": _SERVICE, "method": "Notify"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


class EvolutionClient:
    def __init__(self, target: str, *, timeout_s: float = 5.0) -> None:
        self._timeout = timeout_s
        self._breaker = Breaker("evolution")
        self._channel = grpc.aio.insecure_channel(
            target,
            options=[("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)],
            interceptors=tracing.client_interceptors(),
        )
        self._stub = evolution_pb2_grpc.EvolutionServiceStub(self._channel)

    async def notify(self, tenant: str, note_ids: Sequence[str]) -> int:
        # Behind a breaker: a hung evolution service must not add its deadline to every write.
        with self._breaker.guard():
            try:
                reply = await self._stub.Notify(
                    evolution_pb2.NotifyRequest(tenant=tenant, note_ids=list(note_ids)),
                    timeout=self._timeout,
                )
            except grpc.aio.AioRpcError as exc:
                raise from_grpc_code(exc.code(), exc.details(), peer="evolution service") from exc
        return reply.owner

    async def revert(self, tenant: str, note_id: str, entry_id: str, *, timeout_s: float) -> str:
        try:
            reply = await self._stub.Revert(
                evolution_pb2.RevertRequest(tenant=tenant, note_id=note_id, entry_id=entry_id),
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as exc:
            raise from_grpc_code(exc.code(), exc.details(), peer="evolution service") from exc
        return reply.revert_entry_id

    async def close(self) -> None:
        await self._channel.close()
