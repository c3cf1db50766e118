"""The vectors of recent search queries, so that a repeated query is not embedded again:
agents often ask the same thing. Bounded (least recently used out), keyed by the query with
its whitespace collapsed and Unicode composed (the tokenizer sees the same tokens) and by the
model that wrote the vector: when the embedding service answers with another model (a
rolling upgrade), the vectors of the old one are dropped. Identical queries in flight at once
share one call."""

from __future__ import annotations

import asyncio
import unicodedata
from collections import OrderedDict

from prometheus_client import Counter

from amem.embedding.client import EmbeddingClient, EmbedResult

QUERY_VECTORS = Counter(
    "amem_gateway_query_vectors_total",
    "Search queries by where their vector came from: hit (the cache), shared (a call in flight "
    "for the same query) or miss (the embedding service).",
    ["outcome"],
)


def normalised(query: str) -> str:
    return " ".join(unicodedata.normalize("NFC", query).split())


class QueryVectors:
    def __init__(self, embedder: EmbeddingClient, *, size: int = 2048) -> None:
        self._embedder = embedder
        self._size = size
        self._cache: OrderedDict[tuple[str | None, str], list[float]] = OrderedDict()
        self._in_flight: dict[str, asyncio.Future[EmbedResult]] = {}

    async def vector(self, query: str) -> list[float]:
        text = normalised(query)
        key = (self._embedder.model, text)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            QUERY_VECTORS.labels("hit").inc()
            return cached
        call = self._in_flight.get(text)
        if call is None:
            QUERY_VECTORS.labels("miss").inc()
            # A task of its own: a caller that gives up does not fail the others waiting.
            call = asyncio.ensure_future(self._embedder.embed([text]))
            self._in_flight[text] = call
            call.add_done_callback(lambda done: self._settle(text, done))
        else:
            QUERY_VECTORS.labels("shared").inc()
        return (await asyncio.shield(call)).vectors[0]

    def _settle(self, text: str, call: asyncio.Future[EmbedResult]) -> None:
        del self._in_flight[text]
        if call.cancelled() or call.exception() is not None:
            return  # each waiter has it raised; a call that failed is not remembered
        embedded = call.result()
        self._remember((embedded.model, text), embedded.vectors[0])

    def _remember(self, key: tuple[str | None, str], vector: list[float]) -> None:
        if self._cache and next(iter(self._cache))[0] != key[0]:
            self._cache.clear()  # another model answers now: the old vectors are of no use
        self._cache[key] = vector
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
