"""The decisions of A-MEM's two steps, made by an LLM or, offline, without one."""

from __future__ import annotations

import re
from typing import Protocol

import numpy as np
from cachetools import LRUCache
from chromadb.utils.embedding_functions.schemas.bm25_tokenizer import (
    DEFAULT_CHROMA_BM25_STOPWORDS,
)

from amem.core.model import Note, ScoredNote
from amem.embedding.client import EmbeddingClient
from amem.evolution import prompts
from amem.evolution.llm import LLM, Usage, schema_of
from amem.evolution.prompts import Construction, Evolution


class Brain(Protocol):
    model: str

    async def construct(
        self, tenant: str, note: Note, previous: Note | None
    ) -> tuple[Construction, Usage]: ...

    async def evolve(
        self, tenant: str, note: Note, neighbours: list[ScoredNote]
    ) -> tuple[Evolution, Usage]: ...


class LLMBrain:
    def __init__(self, llm: LLM) -> None:
        self._llm = llm
        self.model = f"{llm.backend}:{llm.model}"

    async def construct(
        self, tenant: str, note: Note, previous: Note | None
    ) -> tuple[Construction, Usage]:
        return await self._llm.generate(
            prompts.construction_prompt(note.content, previous and previous.content),
            Construction,
            schema_of(Construction),
            tenant=tenant,
        )

    async def evolve(
        self, tenant: str, note: Note, neighbours: list[ScoredNote]
    ) -> tuple[Evolution, Usage]:
        fields = {"content", "context", "tags"}
        reply, usage = await self._llm.generate(
            prompts.evolution_prompt(
                note.model_dump(include=fields),
                [n.note.model_dump(include=fields) for n in neighbours],
            ),
            Evolution,
            prompts.evolution_schema(len(neighbours)),
            tenant=tenant,
        )
        return prompts.resolve(reply, [n.note.id for n in neighbours]), usage


_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
# A word: two or more word characters (scikit-learn's CountVectorizer's default pattern).
_WORD = re.compile(r"(?u)\b\w\w+\b")
# The English stop words of the lexical index (ChromaDB's BM25 list), so that a word the BM25
# half ignores is not a keyword either.
_STOP_WORDS = frozenset(DEFAULT_CHROMA_BM25_STOPWORDS)
_MAX_CANDIDATES = 48
_TERM_CACHE = 20_000


def _candidates(lowered: str) -> list[str]:
    """The distinct words and bigrams of a lower-cased text, stop words dropped before pairing
    (so a bigram may span one), of at most 40 characters, sorted. What scikit-learn's
    `CountVectorizer(ngram_range=(1, 2), stop_words=...)` finds, without the 190 MB that
    scikit-learn and SciPy added to the evolution image for this one use."""
    words = [w for w in _WORD.findall(lowered) if w not in _STOP_WORDS]
    grams = {*words, *(f"{a} {b}" for a, b in zip(words, words[1:], strict=False))}
    return sorted(g for g in grams if len(g) <= 40)


class OfflineBrain:
    """No LLM, no network, and honest about it.

    Keywords are extracted KeyBERT-style: candidate words and bigrams (`_candidates`) ranked
    by the embedding similarity of each candidate to the whole note, with maximal marginal
    relevance for variety. The context is the turn the note follows in a conversation (up to
    300 characters), else the note's first sentence; tags are its top single-word keywords;
    links go to neighbours above a similarity threshold. Neighbours are never rewritten.
    """

    model = "offline"

    def __init__(self, embedder: EmbeddingClient, *, link_threshold: float) -> None:
        self._embedder = embedder
        self._threshold = link_threshold
        # Candidate words and bigrams recur from note to note (a conversation's vocabulary):
        # each is embedded once, not once per note. ~1.5 kB a vector.
        self._term_vectors: LRUCache[str, np.ndarray] = LRUCache(maxsize=_TERM_CACHE)

    async def _terms(
        self, text: str, top: int = 5, diversity: float = 0.5
    ) -> tuple[list[str], list[str]]:
        """(keywords, tags): MMR-ranked words and bigrams, and the most relevant single words."""
        # In order of first appearance, and capped: the cost is one embedding per candidate,
        # and a note's start says the most about it.
        lowered = text.lower()
        names = _candidates(lowered)
        candidates = sorted(names, key=lambda c: lowered.find(c.split()[0]))[:_MAX_CANDIDATES]
        if not candidates:
            return [], []
        known = {c: self._term_vectors.get(c) for c in candidates}
        missing = [c for c, vector in known.items() if vector is None]
        embedded = await self._embedder.embed([text, *missing], background=True)
        doc = np.asarray(embedded.vectors[0], dtype=np.float32)
        for term, vector in zip(missing, embedded.vectors[1:], strict=True):
            known[term] = self._term_vectors[term] = np.asarray(vector, dtype=np.float32)
        cands = np.stack([known[c] for c in candidates])
        relevance = cands @ doc
        chosen: list[int] = []
        while len(chosen) < min(top, len(candidates)):
            if chosen:
                redundancy = (cands @ cands[chosen].T).max(axis=1)
                score = (1 - diversity) * relevance - diversity * redundancy
            else:
                score = relevance.copy()
            score[chosen] = -np.inf
            chosen.append(int(score.argmax()))
        words = [i for i in np.argsort(-relevance) if " " not in candidates[i]][:3]
        return [candidates[i] for i in chosen], [candidates[i] for i in words]

    async def construct(
        self, tenant: str, note: Note, previous: Note | None
    ) -> tuple[Construction, Usage]:
        keywords, tags = await self._terms(note.content)
        # In a conversation, what a turn answers is its best context; else its first sentence.
        if previous is not None:
            context = previous.content.strip()
        else:
            context = _SENTENCE_END.split(note.content.strip(), maxsplit=1)[0]
        if len(context) > 300:
            context = context[:297].rstrip() + "..."
        # Not validated: a note of stop words only has no keywords, and that is the honest answer.
        return Construction.model_construct(keywords=keywords, context=context, tags=tags), Usage()

    async def evolve(
        self, tenant: str, note: Note, neighbours: list[ScoredNote]
    ) -> tuple[Evolution, Usage]:
        links = [n.note.id for n in neighbours if (n.score or 0) >= self._threshold][:5]
        # The note's own tags are kept as they are (no validation against the LLM's bounds).
        return Evolution.model_construct(links=links, tags=note.tags, neighbour_updates=[]), Usage()
