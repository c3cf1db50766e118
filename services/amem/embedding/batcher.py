"""Dynamic batching: coalesce concurrent requests into one model call.

One worker task owns the model. It takes the first waiting request, then keeps collecting
requests until the batch holds `max_batch_size` texts or `max_wait_s` has passed since it
took the first one, and encodes the whole batch in one call on a single worker thread.
While that call runs, new requests queue up and form the next batch, so under load batches
fill by themselves and an idle service adds at most `max_wait_s` to a lone request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram

from amem.embedding.encoder import Encoded

BATCH_TEXTS = Histogram(
    "amem_embedding_batch_size_texts",
    "Texts per model call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
QUEUE_WAIT = Histogram(
    "amem_embedding_queue_wait_seconds",
    "Time a request waited before its batch reached the model.",
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
    def __init__(self, encode: EncodeFn, *, max_batch_size: int, max_wait_s: float) -> None:
        self._encode = encode
        self._max_batch = max_batch_size
        self._max_wait = max_wait_s
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        # The model is not thread-safe and already uses every core inside one call.
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

    async def submit(self, texts: list[str]) -> Encoded:
        future: asyncio.Future[Encoded] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(texts, future))
        return await future

    async def _collect(self) -> list[_Request]:
        first = await self._queue.get()
        batch, size = [first], len(first.texts)
        deadline = time.perf_counter() + self._max_wait
        while size < self._max_batch:
            try:
                request = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(request)
            size += len(request.texts)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [r for r in await self._collect() if not r.future.done()]
            if not batch:
                continue  # every caller gave up (deadline or cancel) while queued
            texts = [t for r in batch for t in r.texts]
            started = time.perf_counter()
            for r in batch:
                QUEUE_WAIT.observe(started - r.enqueued)
            try:
                encoded = await loop.run_in_executor(self._executor, self._encode, texts)
            except Exception as exc:  # the model failed: every caller in the batch learns why
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
                continue
            ENCODE_SECONDS.observe(time.perf_counter() - started)
            BATCH_TEXTS.observe(len(texts))
            TEXTS.inc(len(texts))
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
