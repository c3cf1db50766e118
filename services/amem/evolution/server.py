"""The evolution gRPC server: `python -m amem.evolution`."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import orjson
from opentelemetry import trace
from prometheus_client import start_http_server

from amem.core import logs, repair, tracing
from amem.core.errors import InvalidArgument, NotFound
from amem.core.grpc_server import create_server, set_serving, wait_for_stop_signal
from amem.core.model import NoteFilter
from amem.core.quotas import Quotas, UsageStore
from amem.core.store import NoteStore
from amem.core.writer import Edited, NoteWriter
from amem.embedding.client import EmbeddingClient
from amem.evolution.auditor import audit_forever
from amem.evolution.brain import Brain, LLMBrain, OfflineBrain
from amem.evolution.client import FORWARDED, EvolutionClient, if_match_of
from amem.evolution.engine import Engine
from amem.evolution.llm import make_llm
from amem.evolution.membership import Membership
from amem.evolution.scheduler import Scheduler
from amem.evolution.settings import EvolutionSettings
from amem.evolution.v1 import evolution_pb2, evolution_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = evolution_pb2.DESCRIPTOR.services_by_name["EvolutionService"].full_name


class EvolutionServicer(evolution_pb2_grpc.EvolutionServiceServicer):
    def __init__(
        self,
        scheduler: Scheduler,
        engine: Engine,
        membership: Membership,
        writer: NoteWriter,
        store: NoteStore,
        bulk: NoteStore,
        embedder: EmbeddingClient,
    ):
        """`bulk`: a store client with a long deadline, for a rebuild's large reads;
        `embedder`, for a rebuild that re-embeds."""
        self._embedder = embedder
        self._scheduler = scheduler
        self._engine = engine
        self._membership = membership
        self._writer = writer
        self._store = store
        self._bulk = bulk

    def _owner(self, tenant: str, context: Any = None) -> EvolutionClient | None:
        """A client of the owner when it is another replica, else None. A call another
        replica forwarded is served here whatever this replica thinks (see the proto)."""
        if not tenant:
            raise InvalidArgument("tenant must not be empty")
        if self._scheduler.owns(tenant):
            return None
        if context is not None and FORWARDED in tuple(context.invocation_metadata() or ()):
            log.warning("serving a forwarded call for a tenant this replica does not own")
            return None
        return self._membership.client(self._scheduler.owner(tenant))

    @staticmethod
    def _left(context: Any, default: float = 60.0) -> float:
        """The caller's deadline left, for a forwarded call."""
        return context.time_remaining() or default

    async def Notify(self, request, context):  # noqa: N802
        owner = self._owner(request.tenant)
        if owner is not None:
            return evolution_pb2.NotifyResponse(
                owner=await owner.notify(request.tenant, list(request.note_ids))
            )
        # The evolution runs later, in a trace of its own that links back to this request's.
        origin = trace.get_current_span().get_span_context()
        self._scheduler.enqueue(request.tenant, list(request.note_ids), origin=origin)
        return evolution_pb2.NotifyResponse(owner=self._scheduler.index)

    async def Revert(self, request, context):  # noqa: N802
        owner = self._owner(request.tenant, context)
        if owner is not None:
            entry = await owner.revert(
                request.tenant,
                request.note_id,
                request.entry_id,
                timeout_s=self._left(context, 30.0),
                forwarded=True,
            )
            return evolution_pb2.RevertResponse(revert_entry_id=entry)
        note = await self._engine.revert(request.tenant, request.note_id, request.entry_id)
        return evolution_pb2.RevertResponse(revert_entry_id=note.evolution_history[-1].id)

    async def Update(self, request, context):  # noqa: N802
        changes = orjson.loads(request.changes_json or "{}")
        owner = self._owner(request.tenant, context)
        if owner is not None:
            edited = await owner.update(
                request.tenant,
                request.note_id,
                changes,
                if_match=if_match_of(request),
                forwarded=self._left(context),
            )
        else:
            edited = await self._writer.update(
                request.tenant, request.note_id, changes, if_match=if_match_of(request)
            )
        return _update_response(edited)

    async def Retry(self, request, context):  # noqa: N802
        owner = self._owner(request.tenant, context)
        if owner is not None:
            edited = await owner.retry(
                request.tenant, request.note_id, forwarded=self._left(context)
            )
        else:
            edited = await self._writer.retry(request.tenant, request.note_id)
        return _update_response(edited)

    async def Erase(self, request, context):  # noqa: N802
        if request.note_ids:
            ids, scope = list(request.note_ids), None
        else:
            scope = NoteFilter(
                user_id=request.user_id if request.HasField("user_id") else None,
                agent_id=request.agent_id if request.HasField("agent_id") else None,
            )
            if scope.user_id is None and scope.agent_id is None:
                raise InvalidArgument("name the notes, or a user_id and/or agent_id")
            ids = None
        owner = self._owner(request.tenant, context)
        if owner is not None:
            erased = await owner.erase(
                request.tenant,
                ids=ids,
                scope=scope,
                if_match=if_match_of(request),
                forwarded=self._left(context),
            )
        else:
            erased = await self._writer.erase(
                request.tenant, ids=ids, scope=scope, if_match=if_match_of(request)
            )
        return evolution_pb2.EraseResponse(
            receipt_json=erased.receipt.model_dump_json(), touched=erased.touched
        )

    async def Reindex(self, request, context):  # noqa: N802
        owner = self._owner(request.tenant, context)
        if owner is not None:
            return await owner.reindex(
                request.tenant,
                timeout_s=self._left(context, 3600.0),
                re_embed=request.re_embed,
                forwarded=True,
            )
        if request.tenant not in await self._store.tenants():
            raise NotFound(f"no tenant {request.tenant!r}")

        async def rebuild() -> repair.Rebuilt:
            return await repair.rebuild(
                self._bulk,
                self._writer,
                request.tenant,
                also_forget=[self._store],
                embedder=self._embedder if request.re_embed else None,
            )

        # Shielded: a caller that gives up must not leave the swap half-way.
        rebuilt = await asyncio.shield(self._scheduler.run_exclusive(request.tenant, rebuild))
        return evolution_pb2.ReindexResponse(
            notes=rebuilt.notes,
            copied=rebuilt.copied,
            passes=rebuilt.passes,
            seconds=rebuilt.seconds,
        )


def _update_response(edited: Edited) -> evolution_pb2.UpdateResponse:
    return evolution_pb2.UpdateResponse(
        note_json=edited.note.model_dump_json(),
        embedding_truncated=edited.truncated,
        touched=edited.touched,
        requeue=edited.requeue,
    )


def make_brain(settings: EvolutionSettings, embedder: EmbeddingClient) -> Brain:
    llm = make_llm(settings)
    if llm is None:
        log.info("no LLM configured: offline backend (extractive keywords, similarity links)")
        return OfflineBrain(embedder, link_threshold=settings.offline_link_threshold)
    log.info("LLM backend %s, model %s", llm.backend, llm.model)
    return LLMBrain(llm)


async def serve(settings: EvolutionSettings) -> None:
    membership = Membership(settings)
    await membership.refresh()
    embedder = EmbeddingClient(settings.embedding_target, timeout_s=settings.embedding_timeout_s)
    store = NoteStore(
        settings.chroma_host,
        settings.chroma_port,
        timeout_s=settings.chroma_timeout_s,
        model=lambda: embedder.model,  # core/store/models.py
    )
    brain = make_brain(settings, embedder)
    budgeted = isinstance(brain, LLMBrain)  # the offline backend spends no tokens
    writer = NoteWriter(store, embedder)
    # A rebuild reads a whole tenant's ids at once: a deadline for that, not for a request.
    bulk = NoteStore(
        settings.chroma_host,
        settings.chroma_port,
        timeout_s=max(120.0, settings.chroma_timeout_s),
        model=lambda: embedder.model,
    )
    engine = Engine(
        store,
        embedder,
        brain,
        writer=writer,
        neighbours=settings.neighbours,
        quotas=Quotas.parse(settings.quotas) if budgeted else None,
        usage=UsageStore(
            settings.chroma_host, settings.chroma_port, timeout_s=settings.chroma_timeout_s
        )
        if budgeted
        else None,
    )
    scheduler = Scheduler(
        engine,
        membership=membership,
        scan_interval_s=settings.scan_interval_s,
        list_tenants=store.tenants,
    )
    server, port, health = await create_server(settings.listen, [SERVICE_NAME])
    evolution_pb2_grpc.add_EvolutionServiceServicer_to_server(
        EvolutionServicer(scheduler, engine, membership, writer, store, bulk, embedder), server
    )
    await server.start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    scheduler.start()
    watcher = asyncio.create_task(membership.run(settings.peers_refresh_s))
    auditor = (
        asyncio.create_task(
            audit_forever(
                store,
                scheduler.owns,
                interval_s=settings.audit_interval_s,
                sample=settings.audit_sample,
            )
        )
        if settings.audit_interval_s
        else None
    )
    await set_serving(health, [SERVICE_NAME], True)
    log.info(
        "evolution service replica %d/%d listening on port %d",
        membership.index,
        membership.replicas,
        port,
    )

    await wait_for_stop_signal()
    log.info("shutting down: finishing the notes in progress")
    await set_serving(health, [SERVICE_NAME], False)
    await scheduler.stop()  # unfinished notes stay pending and are picked up again
    await server.stop(settings.shutdown_grace_s)
    watcher.cancel()
    if auditor is not None:
        auditor.cancel()
    await membership.close()
    await embedder.close()
    await bulk.close()
    await store.close()


def main() -> None:
    # Secrets may come as files (a mounted Kubernetes Secret) named like their variables,
    # e.g. amem_evolution_llm_api_key, in the directory AMEM_SECRETS_DIR.
    settings = EvolutionSettings(_secrets_dir=os.environ.get("AMEM_SECRETS_DIR"))
    logs.configure("evolution", level=settings.log_level, json_logs=settings.json_logs)
    tracing.configure("evolution")
    asyncio.run(serve(settings))
