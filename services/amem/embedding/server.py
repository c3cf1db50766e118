"""The embedding gRPC server: `python -m amem.embedding`."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import start_http_server

from amem.core import logs, tracing
from amem.core.errors import InvalidArgument, Unavailable
from amem.core.grpc_server import create_server, set_serving, wait_for_stop_signal
from amem.embedding.batcher import DynamicBatcher
from amem.embedding.encoder import Encoder
from amem.embedding.settings import EmbeddingSettings
from amem.embedding.v1 import embedding_pb2, embedding_pb2_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = embedding_pb2.DESCRIPTOR.services_by_name["EmbeddingService"].full_name


class EmbeddingServicer(embedding_pb2_grpc.EmbeddingServiceServicer):
    def __init__(self, settings: EmbeddingSettings) -> None:
        self._settings = settings
        self._encoder: Encoder | None = None
        self._batcher: DynamicBatcher | None = None

    def attach(self, encoder: Encoder) -> None:
        """Start serving with a loaded model."""
        self._encoder = encoder
        self._batcher = DynamicBatcher(
            lambda texts: encoder.encode(texts, batch_size=self._settings.max_batch_size),
            max_batch_size=self._settings.max_batch_size,
            max_wait_s=self._settings.max_wait_ms / 1000,
            background_chunk=self._settings.background_chunk,
        )
        self._batcher.start()

    async def close(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()

    def _ready(self) -> tuple[Encoder, DynamicBatcher]:
        if self._encoder is None or self._batcher is None:
            raise Unavailable("the embedding model is still loading")
        return self._encoder, self._batcher

    def _validate(self, texts: list[str]) -> None:
        s = self._settings
        if not texts:
            raise InvalidArgument("texts must not be empty")
        if len(texts) > s.max_texts_per_call:
            raise InvalidArgument(
                f"too many texts: {len(texts)} > max_texts_per_call {s.max_texts_per_call}"
            )
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"texts[{i}] is empty")
            if len(text) > s.max_text_chars:
                raise InvalidArgument(
                    f"texts[{i}] has {len(text)} characters > max_text_chars {s.max_text_chars}"
                )

    async def Embed(self, request, context):  # noqa: N802 (gRPC method name)
        texts = list(request.texts)
        self._validate(texts)
        encoder, batcher = self._ready()
        background = request.priority == embedding_pb2.PRIORITY_BACKGROUND
        encoded = await batcher.submit(texts, background=background)
        return embedding_pb2.EmbedResponse(
            embeddings=[
                embedding_pb2.Embedding(
                    values=vector.tolist(), token_count=count, truncated=count > encoder.max_tokens
                )
                for vector, count in zip(encoded.vectors, encoded.token_counts, strict=True)
            ],
            model=encoder.name,
            dimensions=encoder.dimensions,
        )

    async def GetModelInfo(self, request, context):  # noqa: N802
        encoder, _ = self._ready()
        return embedding_pb2.ModelInfo(
            model=encoder.name,
            dimensions=encoder.dimensions,
            max_tokens=encoder.max_tokens,
            device=encoder.device,
            backend=encoder.backend,
            max_texts_per_call=self._settings.max_texts_per_call,
            max_text_chars=self._settings.max_text_chars,
        )


async def serve(settings: EmbeddingSettings) -> None:
    servicer = EmbeddingServicer(settings)
    server, port, health = await create_server(settings.listen, [SERVICE_NAME])
    embedding_pb2_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
    await server.start()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    log.info("embedding service listening on port %d; loading model %s", port, settings.model)

    async def load() -> None:
        # Health stays NOT_SERVING until this is done, so probes and clients wait for it.
        encoder = await asyncio.to_thread(Encoder, settings)
        servicer.attach(encoder)
        await set_serving(health, [SERVICE_NAME], True)
        log.info("embedding service ready")

    loader = asyncio.create_task(load())
    stopper = asyncio.create_task(wait_for_stop_signal())
    done, _ = await asyncio.wait({loader, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if loader in done:
        loader.result()  # a model that fails to load ends the process with its error
        await stopper
    log.info("shutting down (grace %.1fs)", settings.shutdown_grace_s)
    await set_serving(health, [SERVICE_NAME], False)
    await server.stop(settings.shutdown_grace_s)
    await servicer.close()


def main() -> None:
    settings = EmbeddingSettings()
    logs.configure("embedding", level=settings.log_level, json_logs=settings.json_logs)
    tracing.configure("embedding")
    asyncio.run(serve(settings))
