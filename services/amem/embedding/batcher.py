"""Dynamic batching: coalesce concurrent requests into one model call, interactive first.

One worker task owns the model. It takes the first waiting interactive request, then keeps
collecting interactive requests until the batch holds `max_batch_size` texts or `max_wait_s`
has passed since it took the first one, and encodes the whole batch in one call on a single
worker thread. While that call runs, new requests queue up and form the next batch, so under
load batches fill by themselves and an idle service adds at most `max_wait_s` to a lone request.

Background requests (evolution's keyword candidates: nobody waits on them) are served only
when no interactive request is queued, and in chunks of `background_chunk` texts with the
interactive queue checked between chunks: a REST write or search waits for at most one small
chunk, never behind a backlog of evolution work.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import Counter, Histogram

from amem.embedding.encoder import Encoded

BATCH_TEXTS = Histogram(
    "amem_embedding_batch_size_texts",
    "Texts per model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
QUEUE_WAIT = Histogram(
    "amem_embedding_queue_wait_seconds",
    "Time a request waited before its batch reached the model, by priority.",
    ["priority"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
ENCODE_SECONDS = Histogram(
    "amem_embedding_encode_seconds",
    "Time of one model call (tokenise and encode a batch).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
TEXTS = Counter("amem_embedding_texts_total", "Texts embedded.")

EncodeFn = Callable[[list[str]], Encoded]


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[Encoded]
    enqueued: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(
        self,
        encode: EncodeFn,
        *,
        max_batch_size: int,
        max_wait_s: float,
        background_chunk: int = 8,
    ) -> None:
        self._encode = encode
        self._max_batch = max_batch_size
        self._max_wait = max_wait_s
        self._chunk = background_chunk
        self._interactive: deque[_Request] = deque()
        self._background: deque[_Request] = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="embedding-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], *, background: bool = False) -> Encoded:
        future: asyncio.Future[Encoded] = asyncio.get_running_loop().create_future()
        (self._background if background else self._interactive).append(_Request(texts, future))
        self._arrived.set()
        return await future

    async def _collect_interactive(self) -> list[_Request]:
        first = self._interactive.popleft()
        batch, size = [first], len(first.texts)
        deadline = time.perf_counter() + self._max_wait
        while size < self._max_batch:
            if self._interactive:
                request = self._interactive.popleft()
                batch.append(request)
                size += len(request.texts)
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                break
        return batch

    def _collect_background(self) -> list[_Request]:
        batch, size = [], 0
        while self._background and (not batch or size < self._max_batch):
            request = self._background.popleft()
            batch.append(request)
            size += len(request.texts)
        return batch

    async def _run(self) -> None:
        while True:
            if self._interactive:
                await self._serve(await self._collect_interactive(), "interactive", None)
            elif self._background:
                await self._serve(self._collect_background(), "background", self._chunk)
            else:
                self._arrived.clear()
                await self._arrived.wait()

    async def _call_model(self, texts: list[str]) -> Encoded:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(self._executor, self._encode, texts)
        ENCODE_SECONDS.observe(time.perf_counter() - started)
        BATCH_TEXTS.observe(len(texts))
        TEXTS.inc(len(texts))
        return encoded

    async def _serve(self, batch: list[_Request], priority: str, chunk: int | None) -> None:
        batch = [r for r in batch if not r.future.done()]
        if not batch:
            return  # every caller gave up (deadline or cancel) while queued
        texts = [t for r in batch for t in r.texts]
        started = time.perf_counter()
        for r in batch:
            QUEUE_WAIT.labels(priority).observe(started - r.enqueued)
        try:
            if chunk is None:
                encoded = await self._call_model(texts)
            else:
                parts = []
                for start in range(0, len(texts), chunk):
                    while self._interactive:  # someone waits: they go first
                        await self._serve(await self._collect_interactive(), "interactive", None)
                    parts.append(await self._call_model(texts[start : start + chunk]))
                encoded = Encoded(
                    vectors=np.concatenate([p.vectors for p in parts]),
                    token_counts=[c for p in parts for c in p.token_counts],
                )
        except Exception as exc:  # the model failed: every caller in the batch learns why
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        offset = 0
        for r in batch:
            n = len(r.texts)
            part = Encoded(
                vectors=encoded.vectors[offset : offset + n],
                token_counts=encoded.token_counts[offset : offset + n],
            )
            offset += n
            if not r.future.done():
                r.future.set_result(part)
