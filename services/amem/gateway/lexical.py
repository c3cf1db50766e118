"""The lexical half of hybrid search: BM25 over each tenant's notes, in SQLite FTS5.

ChromaDB is the system of record, and its local server has no ranked full-text search (its
sparse-vector indexes are Chroma Cloud only), so each gateway keeps a BM25 index per tenant as a
*cache* of the store, in an in-memory SQLite database (FTS5 with the Porter stemmer: SQLite
ranks, nothing here does).

Freshness: a gateway indexes what it writes itself at once, and before a search it pulls the
notes that changed since its last pull (every stored change bumps a note's `updated_at`), at most
every `refresh_s`. The pull reaches `margin_s` back to cover writes still in flight when it ran
and clocks that disagree between pods. When the index and the store disagree on the
number of notes (another replica deleted some), the index is reconciled with the store's ids;
deleted notes are never served meanwhile (hits are read from the store). A tenant is loaded
on its first search, in the background: until then its searches are dense only (the response
says so).
Tenants that have not been searched for the longest are dropped when the index holds more than
`max_notes` notes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from chromadb.utils.embedding_functions.schemas.bm25_tokenizer import (
    DEFAULT_CHROMA_BM25_STOPWORDS,
)
from prometheus_client import Gauge, Histogram

from amem.core.model import Note, NoteFilter
from amem.core.store import NoteStore, to_micros

log = logging.getLogger(__name__)

LEXICAL_NOTES = Gauge("amem_lexical_index_notes", "Notes held in this gateway's BM25 index")
LEXICAL_TENANTS = Gauge("amem_lexical_index_tenants", "Tenants held in this gateway's BM25 index")
LEXICAL_QUERY = Histogram(
    "amem_lexical_query_seconds",
    "Time of one BM25 query in SQLite FTS5",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
LEXICAL_REFRESH = Histogram(
    "amem_lexical_refresh_seconds",
    "Time to bring one tenant's BM25 index up to date with the store",
    labelnames=("kind",),
)

_WORD = re.compile(r"\w+")
_SEP = "\x1f"
_MAX_QUERY_TERMS = 32
# In a tenant of more than _PRUNE_ABOVE notes, a query word found in more than _COMMON_SHARE of
# them is left out of the match: it adds little to the BM25 order (its idf is low) and most of
# the cost (FTS5 ranks every matching note). The two rarest words are always kept.
_PRUNE_ABOVE = 20_000
_COMMON_SHARE = 0.05
# Chroma's own BM25 stop words (179 English words): they only slow a query down.
_STOP_WORDS = frozenset(DEFAULT_CHROMA_BM25_STOPWORDS)
_PAGE = 1_000


def query_terms(text: str) -> list[str]:
    """The words of a query worth matching: no stop words, no repeats, FTS5-quoted."""
    words = [w for w in _WORD.findall(text.lower()) if w not in _STOP_WORDS]
    return [f'"{w}"' for w in dict.fromkeys(words)][:_MAX_QUERY_TERMS]


def indexed_text(note: Note) -> str:
    """What BM25 sees: the content and the note's A-MEM attributes."""
    return " ".join([note.content, note.context, " ".join(note.keywords), " ".join(note.tags)])


@dataclass
class _Tenant:
    table: str
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pulled_at: float = 0.0  # monotonic time of the last pull
    pulled_from: int = 0  # updated_at (µs) the next pull starts from, before the margin
    notes: int = 0
    loading: asyncio.Task | None = None
    # Ids indexed with an updated_at inside the margin: what a pull need not fetch again.
    recent: dict[str, int] = field(default_factory=dict)
    # Document frequency of query words, and the note count it was taken at.
    df: dict[str, int] = field(default_factory=dict)
    df_notes: int = 0


class LexicalIndex:
    def __init__(
        self,
        store: NoteStore,
        *,
        refresh_s: float = 1.0,
        margin_s: float = 30.0,
        max_notes: int = 2_000_000,
        prune_above: int = _PRUNE_ABOVE,
        common_share: float = _COMMON_SHARE,
    ) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._margin_us = int(margin_s * 1_000_000)
        self._max_notes = max_notes
        self._prune_above = prune_above
        self._common_share = common_share
        # One thread owns the connection: SQLite calls never block the event loop.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="amem-lexical")
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._next_table = 0

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # --- writes -------------------------------------------------------------------------

    def _upsert_sync(self, table: str, notes: Sequence[Note]) -> int:
        notes = list({n.id: n for n in notes}.values())  # the last version of each
        rows = [
            (
                n.id,
                indexed_text(n),
                n.user_id,
                n.agent_id,
                n.category,
                _SEP + _SEP.join(n.tags) + _SEP,
                to_micros(n.timestamp),
            )
            for n in notes
        ]
        with self._db:
            self._delete(table, [n.id for n in notes])
            # A note's FTS row shares its rowid with its row in the id map.
            self._db.executemany(
                f"INSERT INTO {table}_ids (id) VALUES (?)", [(n.id,) for n in notes]
            )
            self._db.executemany(
                f"INSERT INTO {table} (rowid, id, body, user_id, agent_id, category, tags, ts) "
                f"SELECT rowid, ?, ?, ?, ?, ?, ?, ? FROM {table}_ids WHERE id = ?",
                [(*row, row[0]) for row in rows],
            )
        return self._count_sync(table)

    def _delete(self, table: str, ids: Sequence[str]) -> None:
        # By rowid: FTS5 finds a row by its rowid, never by an unindexed column (a full scan).
        self._db.executemany(
            f"DELETE FROM {table} WHERE rowid = (SELECT rowid FROM {table}_ids WHERE id = ?)",
            [(i,) for i in ids],
        )
        self._db.executemany(f"DELETE FROM {table}_ids WHERE id = ?", [(i,) for i in ids])

    def _remove_sync(self, table: str, ids: Sequence[str]) -> int:
        with self._db:
            self._delete(table, ids)
        return self._count_sync(table)

    def _ids_sync(self, table: str) -> list[str]:
        return [r[0] for r in self._db.execute(f"SELECT id FROM {table}_ids")]

    def _count_sync(self, table: str) -> int:
        return self._db.execute(f"SELECT count(*) FROM {table}_ids").fetchone()[0]

    async def upsert(self, tenant: str, notes: Sequence[Note]) -> None:
        """Index notes this gateway just wrote (no-op for a tenant not loaded here)."""
        state = self._tenants.get(tenant)
        if state is not None and state.ready.is_set() and notes:
            state.notes = await self._run(self._upsert_sync, state.table, notes)
            self._seen(state, notes)

    async def remove(self, tenant: str, ids: Sequence[str]) -> None:
        state = self._tenants.get(tenant)
        if state is not None and state.ready.is_set() and ids:
            state.notes = await self._run(self._remove_sync, state.table, ids)

    # --- freshness ----------------------------------------------------------------------

    def _create_sync(self, table: str) -> None:
        self._db.execute(f"CREATE TABLE {table}_ids (rowid INTEGER PRIMARY KEY, id TEXT UNIQUE)")
        self._db.execute(
            f"CREATE VIRTUAL TABLE {table} USING fts5(id UNINDEXED, body, user_id UNINDEXED, "
            "agent_id UNINDEXED, category UNINDEXED, tags UNINDEXED, ts UNINDEXED, "
            "tokenize='porter unicode61')"
        )

    def _drop_sync(self, table: str) -> None:
        self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self._db.execute(f"DROP TABLE IF EXISTS {table}_ids")

    async def _load(self, tenant: str, state: _Tenant) -> None:
        """Index every note of the tenant, page by page, then mark it ready."""
        started = time.perf_counter()
        try:
            since = int(time.time() * 1_000_000)
            await self._run(self._create_sync, state.table)
            ids = await self._store.ids_where(tenant, NoteFilter())
            for start in range(0, len(ids), _PAGE):
                page = await self._store.get_many(tenant, ids[start : start + _PAGE])
                state.notes = await self._run(self._upsert_sync, state.table, page)
                self._seen(state, page)
            state.pulled_from, state.pulled_at = since, time.monotonic()
            state.ready.set()
            LEXICAL_REFRESH.labels("load").observe(time.perf_counter() - started)
            log.info("lexical index loaded", extra={"tenant": tenant, "notes": state.notes})
            self._evict()
        except Exception:
            log.warning("lexical index load failed; searches stay dense only", exc_info=True)
            await self._forget(tenant)

    def _seen(self, state: _Tenant, notes: Sequence[Note]) -> None:
        horizon = int(time.time() * 1_000_000) - self._margin_us
        for note in notes:
            stamp = to_micros(note.updated_at)
            if stamp >= horizon:
                state.recent[note.id] = stamp
        for note_id in [i for i, stamp in state.recent.items() if stamp < horizon]:
            del state.recent[note_id]

    async def _pull(self, tenant: str, state: _Tenant) -> None:
        """Index what changed in the store since the last pull, and reconcile on a count gap.

        Notes stamped since the last pull are fetched whole. Of those stamped within the margin
        before it, only the ids are read, and only ids this index has not seen in that window
        are fetched (writes that landed after the last pull read the store).
        """
        started = time.perf_counter()
        now = int(time.time() * 1_000_000)
        # Ids first, then the notes by id: ChromaDB pages a filtered `get` by re-reading it.
        fresh = await self._store.ids_changed_since(tenant, state.pulled_from)
        window = await self._store.ids_changed_since(tenant, state.pulled_from - self._margin_us)
        late = [i for i in window if i not in state.recent]
        changed = await self._store.get_many(tenant, list(dict.fromkeys([*fresh, *late])))
        if changed:
            state.notes = await self._run(self._upsert_sync, state.table, changed)
            self._seen(state, changed)
        state.pulled_from, state.pulled_at = now, time.monotonic()
        if state.notes != await self._store.count(tenant):
            await self._reconcile(tenant, state)
        LEXICAL_REFRESH.labels("pull").observe(time.perf_counter() - started)

    async def _reconcile(self, tenant: str, state: _Tenant) -> None:
        """Make the index hold exactly the store's notes (another replica deleted some)."""
        stored = set(await self._store.ids_where(tenant, NoteFilter()))
        held = set(await self._run(self._ids_sync, state.table))
        if held - stored:
            state.notes = await self._run(self._remove_sync, state.table, list(held - stored))
        missing = await self._store.get_many(tenant, list(stored - held))
        if missing:
            state.notes = await self._run(self._upsert_sync, state.table, missing)
        self._gauges()

    async def _forget(self, tenant: str) -> None:
        state = self._tenants.pop(tenant, None)
        if state is not None:
            await self._run(self._drop_sync, state.table)
        self._gauges()

    def _evict(self) -> None:
        while sum(t.notes for t in self._tenants.values()) > self._max_notes:
            tenant = next(iter(self._tenants))
            if len(self._tenants) == 1:
                break
            state = self._tenants.pop(tenant)
            self._pool.submit(self._drop_sync, state.table)
        self._gauges()

    def _gauges(self) -> None:
        LEXICAL_TENANTS.set(len(self._tenants))
        LEXICAL_NOTES.set(sum(t.notes for t in self._tenants.values()))

    async def _fresh(self, tenant: str) -> _Tenant | None:
        """The tenant's index if it is loaded (pulled up to date first); None while loading."""
        state = self._tenants.get(tenant)
        if state is None:
            state = _Tenant(table=f"t{self._next_table}")
            self._next_table += 1
            self._tenants[tenant] = state
            state.loading = asyncio.create_task(self._load(tenant, state))
            return None
        self._tenants.move_to_end(tenant)
        if not state.ready.is_set():
            return None
        if time.monotonic() - state.pulled_at >= self._refresh_s:
            lock = self._locks.setdefault(tenant, asyncio.Lock())
            async with lock:
                if time.monotonic() - state.pulled_at >= self._refresh_s:
                    await self._pull(tenant, state)
        return state if self._tenants.get(tenant) is state else None

    async def wait_loaded(self, tenant: str, timeout_s: float) -> bool:
        """Start loading the tenant if needed and wait for it; True once it is searchable."""
        await self._fresh(tenant)
        state = self._tenants.get(tenant)
        if state is None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await state.ready.wait()
        except TimeoutError:
            return False
        return True

    # --- search -------------------------------------------------------------------------

    def _search_sync(self, table: str, match: str, flt: NoteFilter | None, limit: int) -> list[str]:
        where, args = [f"{table} MATCH ?"], [match]
        if flt is not None:
            for name in ("user_id", "agent_id", "category"):
                value = getattr(flt, name)
                if value is not None:
                    where.append(f"{name} = ?")
                    args.append(value)
            if flt.tag is not None:
                where.append("instr(tags, ?) > 0")
                args.append(_SEP + flt.tag + _SEP)
            if flt.since is not None:
                where.append("ts >= ?")
                args.append(to_micros(flt.since))
            if flt.until is not None:
                where.append("ts < ?")
                args.append(to_micros(flt.until))
        # Equal scores are ordered by id, so every replica, and a reloaded index, agree.
        sql = f"SELECT id FROM {table} WHERE {' AND '.join(where)} ORDER BY rank, id LIMIT ?"
        started = time.perf_counter()
        rows = self._db.execute(sql, [*args, limit]).fetchall()
        LEXICAL_QUERY.observe(time.perf_counter() - started)
        return [r[0] for r in rows]

    def _rare_terms_sync(self, state: _Tenant, terms: list[str]) -> list[str]:
        if abs(state.notes - state.df_notes) > state.df_notes // 10:
            state.df.clear()
            state.df_notes = state.notes
        for term in terms:
            if term not in state.df:
                sql = f"SELECT count(*) FROM {state.table} WHERE {state.table} MATCH ?"
                state.df[term] = self._db.execute(sql, (term,)).fetchone()[0]
        by_rarity = sorted(terms, key=state.df.__getitem__)
        common = self._common_share * state.notes
        return [t for i, t in enumerate(by_rarity) if i < 2 or state.df[t] <= common]

    async def search(
        self, tenant: str, query: str, *, limit: int, flt: NoteFilter | None
    ) -> list[str] | None:
        """Ids of the best BM25 matches, best first; None while the tenant is not loaded."""
        state = await self._fresh(tenant)
        if state is None:
            return None
        terms = query_terms(query)
        if not terms:
            return []
        if state.notes > self._prune_above:
            terms = await self._run(self._rare_terms_sync, state, terms)
        return await self._run(self._search_sync, state.table, " OR ".join(terms), flt, limit)

    async def close(self) -> None:
        for state in self._tenants.values():
            if state.loading is not None:
                state.loading.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
