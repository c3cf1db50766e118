"""Client adapter for the evolution service (used by the gateway, and by replicas to forward
work to a tenant's owner). As `Editor` (core/writer.py) it sends a gateway's changes to the
tenant's writer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from amem.core import grpc_client
from amem.core.breaker import Breaker
from amem.core.erasure import ErasureReceipt
from amem.core.model import Note, NoteFilter
from amem.core.writer import Edited, Erased
from amem.evolution.v1 import evolution_pb2, evolution_pb2_grpc

_SERVICE = "amem.evolution.v1.EvolutionService"
_SERVICE_CONFIG: dict[str, Any] = {
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


# Metadata of a call one replica forwards to the tenant's owner (served there, never again
# forwarded).
FORWARDED = ("amem-forwarded", "1")


def if_match_fields(if_match: frozenset[int] | None) -> dict[str, Any]:
    return {"if_versions": sorted(if_match or ()), "if_match": if_match is not None}


def if_match_of(request: Any) -> frozenset[int] | None:
    return frozenset(request.if_versions) if request.if_match else None


class EvolutionClient:
    def __init__(
        self, target: str, *, timeout_s: float = 5.0, edit_timeout_s: float = 60.0
    ) -> None:
        """`timeout_s` bounds a Notify; `edit_timeout_s` an Update or Erase (an erasure of a
        user's memories re-embeds every neighbour it scrubs)."""
        self._timeout = timeout_s
        self._edit_timeout = edit_timeout_s
        self._breaker = Breaker("evolution")
        self._channel = grpc_client.channel(
            target, peer="evolution service", service_config=_SERVICE_CONFIG
        )
        self._stub = evolution_pb2_grpc.EvolutionServiceStub(self._channel)

    async def notify(self, tenant: str, note_ids: Sequence[str]) -> int:
        # Behind a breaker: a hung evolution service must not add its deadline to every write.
        with self._breaker.guard():
            reply = await self._stub.Notify(
                evolution_pb2.NotifyRequest(tenant=tenant, note_ids=list(note_ids)),
                timeout=self._timeout,
            )
        return reply.owner

    async def revert(
        self, tenant: str, note_id: str, entry_id: str, *, timeout_s: float, forwarded: bool = False
    ) -> str:
        reply = await self._stub.Revert(
            evolution_pb2.RevertRequest(tenant=tenant, note_id=note_id, entry_id=entry_id),
            timeout=timeout_s,
            metadata=(FORWARDED,) if forwarded else None,
        )
        return reply.revert_entry_id

    async def update(
        self,
        tenant: str,
        note_id: str,
        changes: dict[str, Any],
        *,
        if_match: frozenset[int] | None = None,
        forwarded: float | None = None,
    ) -> Edited:
        """`forwarded`: the deadline left (s) when a replica forwards the call to the owner."""
        request = evolution_pb2.UpdateRequest(
            tenant=tenant,
            note_id=note_id,
            changes_json=orjson.dumps(changes).decode(),
            **if_match_fields(if_match),
        )
        reply = await self._edit(self._stub.Update, request, forwarded)
        return _edited(reply)

    async def retry(self, tenant: str, note_id: str, *, forwarded: float | None = None) -> Edited:
        request = evolution_pb2.RetryRequest(tenant=tenant, note_id=note_id)
        return _edited(await self._edit(self._stub.Retry, request, forwarded))

    async def erase(
        self,
        tenant: str,
        *,
        ids: Sequence[str] | None = None,
        scope: NoteFilter | None = None,
        if_match: frozenset[int] | None = None,
        forwarded: float | None = None,
    ) -> Erased:
        request = evolution_pb2.EraseRequest(
            tenant=tenant,
            note_ids=list(ids or ()),
            user_id=scope.user_id if scope else None,
            agent_id=scope.agent_id if scope else None,
            **if_match_fields(if_match),
        )
        reply = await self._edit(self._stub.Erase, request, forwarded)
        return Erased(
            receipt=ErasureReceipt.model_validate_json(reply.receipt_json),
            touched=list(reply.touched),
        )

    async def reindex(
        self, tenant: str, *, timeout_s: float, re_embed: bool = False, forwarded: bool = False
    ) -> evolution_pb2.ReindexResponse:
        """Rebuild the tenant's collection on its owner (core/repair.py); with `re_embed`,
        with vectors of the model the embedding service serves now."""
        return await self._stub.Reindex(
            evolution_pb2.ReindexRequest(tenant=tenant, re_embed=re_embed),
            timeout=timeout_s,
            metadata=(FORWARDED,) if forwarded else None,
        )

    async def _edit(self, method: Any, request: Any, forwarded: float | None) -> Any:
        with self._breaker.guard():
            return await method(
                request,
                timeout=self._edit_timeout if forwarded is None else forwarded,
                metadata=None if forwarded is None else (FORWARDED,),
            )

    async def close(self) -> None:
        await self._channel.close()


def _edited(reply: evolution_pb2.UpdateResponse) -> Edited:
    return Edited(
        note=Note.model_validate_json(reply.note_json),
        truncated=reply.embedding_truncated,
        touched=list(reply.touched),
        requeue=reply.requeue,
    )
