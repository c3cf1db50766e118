"""Coalescing: calls that arrive while one is running wait for it, then go together as one.

The first call for a key runs at once; calls for that key that arrive while it runs queue, and
when it ends they go together in one call (up to `max_items` items). A lone call waits for
nothing, and under load there is about one call running per key whatever the concurrency: what
pays where each call has a fixed cost. The gateway coalesces two things:

- **Group commit.** ChromaDB commits each upsert on its own (a SQLite transaction and a log
  write), so single-note writes arriving together would queue behind each other's commits;
  coalesced per tenant, they share one upsert. Each caller is answered only once the upsert
  holding its notes is durable, and if that upsert fails every caller in it gets the error
  (nothing of theirs was acknowledged).
- **Write embeddings.** New notes' texts go to the embedding service in one call per group, so
  their vectors come back together and their writes reach the group commit together (one call
  per write returned them a few at a time, and the commits averaged under 3 notes at 16
  clients).
  A call refused for its input (INVALID_ARGUMENT) is retried per caller, so one caller's text
  never fails another's write.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Histogram

from amem.core.errors import InvalidArgument
from amem.core.model import Note
from amem.core.store import NoteStore
from amem.embedding.client import EmbeddingClient

COMMIT_NOTES = Histogram(
    "amem_gateway_commit_notes",
    "Notes per ChromaDB upsert made by the gateway's group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
EMBED_TEXTS = Histogram(
    "amem_gateway_write_embed_texts",
    "Texts per embedding call made for new notes (coalesced across concurrent writes)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Caller(Generic[T, R]):
    items: Sequence[T]
    done: asyncio.Future[list[R]]


class Coalescer(Generic[K, T, R]):
    """`submit(key, items)` runs `call(key, items)`, coalesced with concurrent submits of the
    same key. `call` returns one result per item, in order. Errors of the `isolate` types
    are not shared: the callers of a failed group are then retried one by one."""

    def __init__(
        self,
        call: Callable[[K, list[T]], Awaitable[Sequence[R]]],
        *,
        max_items: int,
        isolate: tuple[type[Exception], ...] = (),
    ) -> None:
        self._call = call
        self._max_items = max_items
        self._isolate = isolate
        self._waiting: dict[K, deque[_Caller[T, R]]] = {}
        self._running: dict[K, asyncio.Task[None]] = {}

    async def submit(self, key: K, items: Sequence[T]) -> list[R]:
        caller: _Caller[T, R] = _Caller(items, asyncio.get_running_loop().create_future())
        self._waiting.setdefault(key, deque()).append(caller)
        if key not in self._running:
            self._running[key] = asyncio.create_task(self._drain(key))
        # Shielded: a caller that gives up does not cancel a call that holds others' items.
        return await asyncio.shield(caller.done)

    def _take(self, key: K) -> list[_Caller[T, R]]:
        waiting = self._waiting.get(key, deque())
        taken: list[_Caller[T, R]] = []
        size = 0
        while waiting and (not taken or size + len(waiting[0].items) <= self._max_items):
            caller = waiting.popleft()
            taken.append(caller)
            size += len(caller.items)
        if not waiting:
            self._waiting.pop(key, None)
        return taken

    async def _drain(self, key: K) -> None:
        group: list[_Caller[T, R]] = []
        try:
            while group := self._take(key):
                try:
                    results = await self._call(key, [i for c in group for i in c.items])
                except self._isolate as exc:
                    if len(group) == 1:
                        _fail(group, exc)
                    else:
                        for caller in group:
                            await self._alone(key, caller)
                    continue
                except Exception as exc:  # noqa: BLE001 (each caller gets it)
                    _fail(group, exc)
                    continue
                offset = 0
                for caller in group:
                    n = len(caller.items)
                    if not caller.done.done():
                        caller.done.set_result(list(results[offset : offset + n]))
                    offset += n
        except BaseException as exc:  # cancelled (shutdown): nobody may wait forever
            _fail([*group, *self._waiting.pop(key, ())], exc)
            raise
        finally:
            del self._running[key]

    async def _alone(self, key: K, caller: _Caller[T, R]) -> None:
        try:
            caller.done.set_result(list(await self._call(key, list(caller.items))))
        except Exception as exc:  # noqa: BLE001 (this caller's own error)
            _fail([caller], exc)


def _fail(callers: Sequence[_Caller], exc: BaseException) -> None:
    for caller in callers:
        if not caller.done.done():
            caller.done.set_exception(exc)


class GroupCommit:
    """Concurrent writes to one tenant share one ChromaDB upsert."""

    def __init__(self, store: NoteStore, *, max_notes: int = 1_000) -> None:
        self._store = store
        self._group: Coalescer[str, tuple[Note, Sequence[float]], None] = Coalescer(
            self._put, max_items=max_notes
        )

    async def put(
        self, tenant: str, notes: Sequence[Note], vectors: Sequence[Sequence[float]]
    ) -> None:
        await self._group.submit(tenant, list(zip(notes, vectors, strict=True)))

    async def _put(self, tenant: str, items: list[tuple[Note, Sequence[float]]]) -> list[None]:
        # One id once per upsert (ChromaDB refuses a repeat, which would fail every caller in
        # the group): writes that name one id, as retries of a keyed create racing their
        # first attempt do, leave the later one.
        latest = {note.id: (note, vector) for note, vector in items}
        notes = [n for n, _ in latest.values()]
        await self._store.put(tenant, notes, [v for _, v in latest.values()])
        COMMIT_NOTES.observe(len(notes))
        return [None] * len(items)


class WriteEmbedder:
    """Embeds new notes' texts, one embedding call for every write waiting at the time.
    Returns (vector, truncated) per text."""

    def __init__(self, embedder: EmbeddingClient, *, max_texts: int = 128) -> None:
        self._embedder = embedder
        self._group: Coalescer[None, str, tuple[list[float], bool]] = Coalescer(
            self._embed, max_items=max_texts, isolate=(InvalidArgument,)
        )

    async def embed(self, texts: Sequence[str]) -> list[tuple[list[float], bool]]:
        return await self._group.submit(None, texts)

    async def _embed(self, _: None, texts: list[str]) -> list[tuple[list[float], bool]]:
        result = await self._embedder.embed(texts)
        EMBED_TEXTS.observe(len(texts))
        return list(zip(result.vectors, result.truncated, strict=True))
