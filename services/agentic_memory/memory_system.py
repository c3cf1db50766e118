"""A-mem's `AgenticMemorySystem` and `MemoryNote` over an amem server (the SDK).

Existing A-mem code runs unchanged: the same classes, methods, arguments, defaults and result
shapes (agiresearch/A-mem, `agentic_memory/memory_system.py`), with amem doing the work A-mem
did in-process (construction, linking and evolution by the server's evolution service, search
by its hybrid ranking). What differs, and how A-mem's free-form fields round-trip, is in
docs/a-mem.md; in short:

- Each instance works in a fresh scope of its own (A-mem resets its store on construction):
  a new `user_id` per instance, unless `user_id=` binds it to an existing one. The server is
  AMEM_URL (else http://127.0.0.1:8080) with the key AMEM_API_KEY, or `url=`/`amem_api_key=`.
  `api_key` keeps meaning the LLM's key, and is ignored: the server's evolution has its own.
- `add_note` returns once the memory is evolved, as A-mem's does; so does an `update` that
  changes the content (amem evolves it again).
- `links` may hold any strings: ids of memories in the scope become amem links, the list as
  given is kept too (metadata `a_mem_links`), and `read` returns it, followed by any link
  amem's evolution added. `evolution_history`, `retrieval_count` and `last_accessed`, when the
  caller sets them, are kept as given (metadata) and returned instead of amem's own; left
  alone, they show amem's (its history entries, its retrieval counts). A timestamp that is
  not A-mem's "%Y%m%d%H%M" is kept as given too.
- `score` in results is a cosine distance (lower is closer, A-mem's direction); the order is
  amem's hybrid ranking, in which words can outrank meaning.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import datetime
from typing import Any

from amem.client import Client
from amem.core.errors import AmemError, NotFound
from amem.schemas import MemoryPublic

logger = logging.getLogger(__name__)

_TIME = "%Y%m%d%H%M"  # A-mem's timestamps: local time, to the minute
_PREFIX = "a_mem_"  # metadata keys of A-mem's free-form fields
_SETTLE_S = 60.0
# What can be an amem id (anything else in `links` is kept as given, never looked up).
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._:-]{0,63}$")


def _now() -> str:
    return datetime.now().strftime(_TIME)


class MemoryNote:
    """A memory as A-mem has it (a plain object; falsy arguments take the defaults)."""

    def __init__(
        self,
        content: str,
        id: str | None = None,  # noqa: A002 (A-mem's name)
        keywords: list[str] | None = None,
        links: list[str] | None = None,
        retrieval_count: int | None = None,
        timestamp: str | None = None,
        last_accessed: str | None = None,
        context: str | None = None,
        evolution_history: list | None = None,
        category: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        self.content = content
        self.id = id or str(uuid.uuid4())
        self.keywords = keywords or []
        self.links = links or []
        self.context = context or "General"
        self.category = category or "Uncategorized"
        self.tags = tags or []
        self.timestamp = timestamp or _now()
        self.last_accessed = last_accessed or self.timestamp
        self.retrieval_count = retrieval_count or 0
        self.evolution_history = evolution_history or []


_FIELDS = tuple(MemoryNote("x").__dict__)


def _as_instant(value: str) -> str | None:
    """An A-mem timestamp ("%Y%m%d%H%M", local time) as ISO 8601; None for any other text."""
    try:
        return datetime.strptime(str(value), _TIME).astimezone().isoformat()
    except ValueError:
        return None


def _as_text(value: datetime) -> str:
    return value.astimezone().strftime(_TIME)


def _meta(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"), default=str)
    if len(text) > 1024:
        raise ValueError(f"too long to keep beside an amem memory (1,024 characters): {text[:60]}")
    return text


class AgenticMemorySystem:
    """A-mem's memory system, over amem (see the module's doc)."""

    def __init__(
        self,
        model_name: str = "all-MiniLM-L6-v2",
        llm_backend: str = "openai",
        llm_model: str = "gpt-4o-mini",
        evo_threshold: int = 100,
        api_key: str | None = None,
        *,
        url: str | None = None,
        amem_api_key: str | None = None,
        user_id: str | None = None,
        client: Client | None = None,
    ) -> None:
        self.model_name = model_name
        self.llm_backend = llm_backend
        self.llm_model = llm_model
        self.evo_threshold = evo_threshold
        self.evo_cnt = 0
        self.user_id = user_id or f"a-mem-{uuid.uuid4().hex[:16]}"
        self._client = client or Client(url, amem_api_key)
        self.retriever = None  # A-mem's local index: amem's store does its work
        self.llm_controller = None  # and amem's evolution service the LLM's

    # --- the A-mem API ------------------------------------------------------------------

    def add_note(self, content: str, time: str | None = None, **kwargs: Any) -> str:
        """Store a memory and evolve it (construction, links, neighbours); returns its id."""
        if time is not None:
            kwargs["timestamp"] = time
        note = MemoryNote(content=content, **kwargs)  # TypeError for what A-mem refuses
        given = {k for k in kwargs if kwargs[k]}
        body = self._create_body(note, given)
        written = self._client.add(**body, wait=True, wait_timeout=_SETTLE_S)
        if self._evolved(written):
            self.evo_cnt += 1
            if self.evo_cnt % self.evo_threshold == 0:
                self.consolidate_memories()
        return written.id

    def read(self, memory_id: str) -> MemoryNote | None:
        memory = self._get(memory_id)
        return None if memory is None else self._note(memory)

    def update(self, memory_id: str, **kwargs: Any) -> bool:
        """Set the fields A-mem's note has (others are ignored); False for an unknown id."""
        memory = self._get(memory_id)
        if memory is None:
            return False
        fields = {k: v for k, v in kwargs.items() if k in _FIELDS and k != "id"}
        change: dict[str, Any] = {}
        metadata = dict(memory.metadata)
        for name in ("content", "keywords", "tags", "context", "category"):
            if name in fields:
                change[name] = fields[name]
        if "links" in fields:
            change["links"], links_meta = self._links(list(fields["links"] or []))
            metadata.pop(f"{_PREFIX}links", None)
            metadata.update(links_meta)
        if "timestamp" in fields:
            instant = _as_instant(fields["timestamp"])
            metadata.pop(f"{_PREFIX}timestamp", None)
            if instant is None:
                metadata[f"{_PREFIX}timestamp"] = str(fields["timestamp"])
            else:
                change["timestamp"] = instant
        for name in ("last_accessed", "retrieval_count", "evolution_history"):
            if name in fields:
                metadata[f"{_PREFIX}{name}"] = _meta(fields[name])
        if metadata != memory.metadata:
            change["metadata"] = metadata
        if not change:
            return True
        updated = self._client.update(memory_id, **change)
        if updated.status == "pending":  # a new content: evolved again, as add_note is
            self._settle(memory_id)
        return True

    def delete(self, memory_id: str) -> bool:
        if self._get(memory_id) is None:
            return False
        try:
            self._client.delete(memory_id)
        except NotFound:
            return False
        return True

    def search(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        """The k best memories: id, content, context, keywords, score (lower is closer)."""
        return [
            {
                "id": hit.memory.id,
                "content": hit.memory.content,
                "context": hit.memory.context or "General",
                "keywords": hit.memory.keywords,
                "score": _distance(hit.similarity),
            }
            for hit in self._search(query, k, include_links=False)
        ]

    def search_agentic(self, query: str, k: int = 5) -> list[dict[str, Any]]:
        """The k best memories, then the memories linked from them (`is_neighbor`, no score),
        k in all. [] when the scope holds none, or on an error (logged), as A-mem does."""
        try:
            hits = self._search(query, k, include_links=True)
        except Exception:  # A-mem's contract: logged, and no results
            logger.exception("search_agentic failed")
            return []
        results = []
        for hit in hits:
            note = self._note(hit.memory)
            entry = {
                "id": note.id,
                "content": note.content,
                "context": note.context,
                "keywords": note.keywords,
                "tags": note.tags,
                "timestamp": note.timestamp,
                "category": note.category,
                "is_neighbor": hit.linked_from is not None,
            }
            if hit.linked_from is None:
                entry["score"] = _distance(hit.similarity)
            results.append(entry)
        return results[:k]

    def find_related_memories(self, query: str, k: int = 5) -> tuple[str, list[int]]:
        """The k best memories as A-mem's prompt text, and their positions."""
        try:
            hits = self._search(query, k, include_links=False)
        except Exception:  # A-mem's contract: logged, and nothing
            logger.exception("find_related_memories failed")
            return "", []
        text = "".join(
            f"memory index:{i}\t" + _line(self._note(hit.memory)) for i, hit in enumerate(hits)
        )
        return text, list(range(len(hits)))

    def find_related_memories_raw(self, query: str, k: int = 5) -> str:
        """The k best memories as prompt text, each followed by up to k memories it links to."""
        hits = self._search(query, k, include_links=False)
        lines = []
        for hit in hits:
            note = self._note(hit.memory)
            lines.append(_line(note))
            for linked in [self._get(i) for i in note.links[:k]]:
                if linked is not None:
                    lines.append(_line(self._note(linked)))
        return "".join(lines)

    def consolidate_memories(self) -> None:
        """A-mem rebuilt its local index here; amem keeps its index itself (`amem reindex`
        rebuilds a tenant's when its audit finds it damaged), so there is nothing to do."""
        logger.debug("consolidate_memories: nothing to do with an amem server")

    def analyze_content(self, content: str) -> dict[str, Any]:
        """Keywords, context and tags for a text, as amem's evolution writes them (the text
        is stored in a scratch scope, evolved, read and erased)."""
        try:
            written = self._client.add(
                content, user_id=f"{self.user_id}-analyze", wait=True, wait_timeout=_SETTLE_S
            )
            self._client.delete(written.id)
        except AmemError:
            logger.exception("analyze_content failed")
            return {"keywords": [], "context": "General", "tags": []}
        return {"keywords": written.keywords, "context": written.context, "tags": written.tags}

    def process_memory(self, note: MemoryNote) -> tuple[bool, MemoryNote]:
        """Whether evolution linked the note or refined it, and the note as it now is. amem
        evolves every memory as it is stored; a note not stored yet is (False, note)."""
        memory = self._get(note.id)
        if memory is None:
            return False, note
        if memory.status == "pending":
            memory = self._settle(note.id) or memory
        return self._evolved(memory), self._note(memory)

    @property
    def memories(self) -> dict[str, MemoryNote]:
        """Every memory of this instance's scope, by id, in the order stored."""
        return {m.id: self._note(m) for m in self._client.list(user_id=self.user_id)}

    # --- mapping --------------------------------------------------------------------------

    def _create_body(self, note: MemoryNote, given: set[str]) -> dict[str, Any]:
        links, metadata = self._links(note.links)
        body: dict[str, Any] = {
            "content": note.content,
            "id": note.id,
            "keywords": note.keywords,
            "tags": note.tags,
            # A-mem's defaults are values too: what the caller did not give, amem constructs.
            "context": note.context if "context" in given else None,
            "category": note.category,
            "links": links,
            "user_id": self.user_id,
        }
        instant = _as_instant(note.timestamp)
        if instant is None:
            metadata[f"{_PREFIX}timestamp"] = str(note.timestamp)
        else:
            body["timestamp"] = instant
        for name in ("last_accessed", "retrieval_count", "evolution_history"):
            if name in given:
                metadata[f"{_PREFIX}{name}"] = _meta(getattr(note, name))
        body["metadata"] = metadata
        return body

    def _links(self, links: list[str]) -> tuple[list[str], dict[str, str]]:
        """amem links (the ids of memories of this scope) and, when that is not all of
        them, the list as given, for metadata."""
        known = [
            i
            for i in dict.fromkeys(links)
            if isinstance(i, str) and _ID.match(i) and self._get(i) is not None
        ]
        if known == list(links):
            return known, {}
        return known, {f"{_PREFIX}links": _meta(list(links))}

    def _note(self, memory: MemoryPublic) -> MemoryNote:
        meta = memory.metadata

        def kept(name: str, otherwise: Any) -> Any:
            value = meta.get(f"{_PREFIX}{name}")
            return otherwise if value is None else json.loads(str(value))

        links = memory.links
        if f"{_PREFIX}links" in meta:
            given = kept("links", [])
            links = [*given, *(i for i in memory.links if i not in given)]
        timestamp = meta.get(f"{_PREFIX}timestamp")
        return MemoryNote(
            content=memory.content,
            id=memory.id,
            keywords=memory.keywords,
            links=links,
            retrieval_count=kept("retrieval_count", memory.retrieval_count),
            timestamp=str(timestamp) if timestamp is not None else _as_text(memory.timestamp),
            last_accessed=kept("last_accessed", _as_text(memory.last_accessed)),
            context=memory.context or "General",
            evolution_history=kept(
                "evolution_history", [e.model_dump(mode="json") for e in memory.evolution_history]
            ),
            category=memory.category or "Uncategorized",
            tags=memory.tags,
        )

    def _get(self, memory_id: str) -> MemoryPublic | None:
        """The memory if it is in this instance's scope."""
        if not isinstance(memory_id, str) or not _ID.match(memory_id):
            return None  # no amem memory has such an id
        try:
            memory = self._client.get(memory_id)
        except NotFound:
            return None
        return memory if memory.user_id == self.user_id else None

    def _search(self, query: str, k: int, *, include_links: bool):
        return self._client.search(
            query, k=k, user_id=self.user_id, include_links=include_links
        ).results

    def _settle(self, memory_id: str) -> MemoryPublic | None:
        deadline = time.monotonic() + _SETTLE_S
        memory = self._get(memory_id)
        while memory is not None and memory.status == "pending" and time.monotonic() < deadline:
            time.sleep(0.1)
            memory = self._get(memory_id)
        return memory

    @staticmethod
    def _evolved(memory: MemoryPublic) -> bool:
        return any(
            (entry.kind == "evolve" and {"links", "tags"} & set(entry.after))
            or entry.kind == "update_neighbor"
            for entry in memory.evolution_history
        )


def _distance(similarity: float | None) -> float:
    return 1.0 - similarity if similarity is not None else 1.0


def _line(note: MemoryNote) -> str:
    return (
        f"talk start time:{note.timestamp}\tmemory content: {note.content}\t"
        f"memory context: {note.context}\tmemory keywords: {note.keywords!s}\t"
        f"memory tags: {note.tags!s}\n"
    )
