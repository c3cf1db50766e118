"""Backup, restore, export and import of notes, read from and written to ChromaDB directly.

The note format (`amem-notes/1`) is JSON Lines, one note per line: every field of the note
(`id`, `content`, `keywords`, `links`, `tags`, `context`, `category`, `timestamp`,
`last_accessed`, `retrieval_count`, `evolution_history`, `user_id`, `agent_id`, `metadata`,
`follows`, `status`, `status_reason`, `created_at`, `updated_at`, `version`, `plan`,
`influenced_by`, `idempotency`), times in
ISO 8601, plus `embedding`, the stored vector. Each id appears once. On import only `content`
is required: a line without `id` gets one derived from its content and timestamp (importing a
file twice does not duplicate it), and a line without `embedding` is embedded by the embedding
service.

A backup is a folder `amem-backup-<UTC time>` on a target (targets.py) holding one gzipped
note file per tenant, one gzipped file per system collection (managed API keys, LLM usage
counters: `{"id": ..., "metadata": {...}}` lines; every record, or those of the tenants
chosen)
and, written last, `manifest.json`: a folder without a manifest is an unfinished backup and is
never restored. A stored record that does not decode as a note (corrupt, or written by a
version that did not validate it) is left out and named, with the reason, under its tenant's
`unreadable` in the manifest; the backup goes on, and `amem backup` exits non-zero.

A restore merges system records rather than overwriting them: a key is added only where the
deployment lacks its id, so a restore never brings back a key revoked or expired since the
backup (keys revoked after the backup, in a deployment that lost them, do come back: revoke
them again); a usage counter takes the larger of the two counts, as counters only grow.

Snapshots are taken while writes continue. A tenant's ids are listed, its notes read in pages,
then the notes changed since shortly before the listing are read again and the ids deleted
meanwhile dropped, so the file holds the tenant as it was at the end of its snapshot (each
note as one atomic read) rather than a mix of moments. A restore writes by id (upsert), so
restoring into a deployment that still has some of the notes replaces them and duplicates
nothing; restored notes get a new `updated_at`, so every cache that follows changes (each
gateway's BM25 index) picks them up.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import ValidationError

from amem.backup.targets import Target
from amem.core.model import Note, utcnow
from amem.core.store import RESTORE_MERGE, NoteStore, to_micros

NOTES_FORMAT = "amem-notes/1"
SYSTEM_FORMAT = "amem-system/1"
BACKUP_FORMAT = "amem-backup/1"
BACKUP_PREFIX = "amem-backup-"
MANIFEST = "manifest.json"
# Notes stamped up to this long before a snapshot started are read again at its end: covers
# writes in flight when it started and clocks that differ between pods.
CATCH_UP_MARGIN = timedelta(seconds=30)
_PAGE = 500
_ID_NAMESPACE = uuid.UUID("6f2b8f1e-5d0c-4c8e-9d57-0a1e3f5c9b21")

# Called with the number of notes just handled (a progress bar's `update`).
Progress = Callable[[int], object]


class BackupError(Exception):
    """A backup or restore cannot go on; the message says why."""


def note_line(note: Note, embedding: Sequence[float] | None) -> bytes:
    record: dict[str, Any] = note.model_dump(mode="json")
    if embedding is not None:
        record["embedding"] = list(embedding)
    return orjson.dumps(record) + b"\n"


def parse_line(line: bytes, number: int) -> tuple[Note, list[float] | None]:
    """One note of a note file; `BackupError` naming the line and the field on bad input."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise BackupError(f"line {number}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise BackupError(f"line {number}: expected a JSON object")
    embedding = data.pop("embedding", None)
    if embedding is not None and not (
        isinstance(embedding, list)
        and embedding
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in embedding)
    ):
        raise BackupError(f"line {number}: embedding must be a non-empty array of numbers")
    if "id" not in data and isinstance(data.get("content"), str):
        seed = f"{data['content']}\x00{data.get('timestamp', '')}"
        data["id"] = str(uuid.uuid5(_ID_NAMESPACE, seed))
    try:
        note = Note.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "note"
        raise BackupError(f"line {number}: {where}: {first['msg']}") from exc
    return note, embedding


def read_lines(path: Path) -> Iterator[tuple[Note, list[float] | None]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield parse_line(line, number)


@dataclass
class Snapshot:
    tenant: str
    notes: int
    caught_up: int  # notes read again because they changed during the snapshot
    dropped: int  # notes deleted during the snapshot
    # Records that did not decode as notes, left out: {id: why}.
    unreadable: dict[str, str] = field(default_factory=dict)


async def snapshot(
    store: NoteStore, tenant: str, out: IO[bytes], progress: Progress = lambda n: None
) -> Snapshot:
    """Write every note of `tenant`, with its embedding, to `out` (see the module's doc). A
    record that does not decode as a note is left out and named in `Snapshot.unreadable`:
    one bad record must not cost the backup of every other."""
    started_us = to_micros(utcnow() - CATCH_UP_MARGIN)
    unreadable: dict[str, str] = {}

    def skip(note_id: str, exc: Exception) -> None:
        unreadable[note_id] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"

    ids = await store.all_ids(tenant)
    read = 0
    with tempfile.TemporaryFile() as first:
        for start in range(0, len(ids), _PAGE):
            chunk = ids[start : start + _PAGE]
            for note, embedding in await store.records(tenant, chunk, unreadable=skip):
                first.write(note_line(note, embedding))
                read += 1
            progress(len(chunk))
        changed = await store.ids_changed_since(tenant, started_us)
        present = set(await store.all_ids(tenant))
        gone = set(ids) - present
        later = await store.records(tenant, [i for i in changed if i in present], unreadable=skip)
        superseded = gone | {note.id for note, _ in later}
        first.seek(0)
        if not superseded:  # nothing changed meanwhile: the first pass is the snapshot
            shutil.copyfileobj(first, out, 1 << 20)
            written = read
        else:
            written = 0
            for line in first:
                if orjson.loads(line)["id"] not in superseded:
                    out.write(line)
                    written += 1
    for note, embedding in later:
        out.write(note_line(note, embedding))
    for note_id in (gone & set(unreadable)) | {note.id for note, _ in later}:
        unreadable.pop(note_id, None)
    return Snapshot(tenant, written + len(later), len(later), len(gone & set(ids)), unreadable)


async def load(
    store: NoteStore,
    tenant: str,
    notes: Iterator[tuple[Note, list[float] | None]],
    *,
    embed: Callable[[list[str]], Any] | None = None,
    progress: Progress = lambda n: None,
) -> int:
    """Upsert `notes` into `tenant` in pages; notes without an embedding go through `embed`
    (an async texts -> vectors function), or fail the load if there is none."""
    total = 0
    batch: list[tuple[Note, list[float] | None]] = []

    async def flush() -> None:
        nonlocal total
        missing = [i for i, (_, e) in enumerate(batch) if e is None]
        vectors = [e for _, e in batch]
        if missing:
            if embed is None:
                raise BackupError(
                    f"note {batch[missing[0]][0].id} has no embedding: "
                    "pass --embedding-target to embed such notes"
                )
            computed = await embed([batch[i][0].embedding_text() for i in missing])
            for i, vector in zip(missing, computed, strict=True):
                vectors[i] = vector
        now = utcnow()
        for note, _ in batch:
            note.updated_at = now
        # One id once per upsert: a later line for the same id wins.
        latest = {note.id: (note, vector) for (note, _), vector in zip(batch, vectors, strict=True)}
        await store.put(tenant, [n for n, _ in latest.values()], [v for _, v in latest.values()])
        total += len(batch)
        progress(len(batch))
        batch.clear()

    for item in notes:
        batch.append(item)
        if len(batch) >= _PAGE:
            await flush()
    if batch:
        await flush()
    return total


Record = dict[str, Any]


def _wanted(meta: Record, tenants: set[str] | None) -> bool:
    return tenants is None or meta.get("tenant") in tenants


async def _save_system(store: NoteStore, name: str, tenants: set[str] | None, path: Path) -> int:
    records = await store.system(name).get()
    kept = 0
    with gzip.open(path, "wb", compresslevel=6) as out:
        for record_id, meta in sorted(records.items()):
            if _wanted(meta, tenants):
                out.write(orjson.dumps({"id": record_id, "metadata": meta}) + b"\n")
                kept += 1
    return kept


async def _load_system(store: NoteStore, name: str, tenants: set[str] | None, path: Path) -> int:
    saved: dict[str, Record] = {}
    with gzip.open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                record = orjson.loads(line)
                record_id, meta = record["id"], record["metadata"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise BackupError(f"{path.name} line {number}: not a system record") from exc
            if _wanted(meta, tenants):
                saved[record_id] = meta
    collection = store.system(name)
    live = await collection.get(list(saved)) if saved else {}
    merge = RESTORE_MERGE[name]
    merged = {i: m for i, meta in saved.items() if (m := merge(live.get(i), meta))}
    if merged:
        await collection.put(merged)
    return len(merged)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def backup_names(target: Target) -> list[str]:
    """Complete backups on `target`, oldest first."""
    return [
        name
        for name in target.folders()
        if name.startswith(BACKUP_PREFIX) and target.exists(f"{name}/{MANIFEST}")
    ]


async def backup(
    store: NoteStore,
    target: Target,
    tenants: Sequence[str] | None = None,
    *,
    progress: Callable[[str, int], Progress] = lambda tenant, total: lambda n: None,
) -> dict[str, Any]:
    """Snapshot `tenants` (default: all) to a new backup on `target`; returns its manifest."""
    existing = await store.tenants()
    if tenants:
        unknown = sorted(set(tenants) - set(existing))
        if unknown:
            raise BackupError(f"no such tenant: {', '.join(unknown)}")
    chosen = sorted(tenants or existing)
    started = utcnow()
    name = BACKUP_PREFIX + started.strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
    manifest: dict[str, Any] = {
        "format": BACKUP_FORMAT,
        "notes_format": NOTES_FORMAT,
        "name": name,
        "amem_version": importlib.metadata.version("amem"),
        "started_at": started.isoformat(),
        "tenants": {},
    }
    with tempfile.TemporaryDirectory(prefix="amem-backup-") as tmp:
        for tenant in chosen:
            path = Path(tmp) / f"{tenant}.jsonl.gz"
            total = await store.count(tenant)
            with gzip.open(path, "wb", compresslevel=6) as out:
                shot = await snapshot(store, tenant, out, progress(tenant, total))
            key = f"{name}/tenants/{tenant}.jsonl.gz"
            target.put(key, path)
            manifest["tenants"][tenant] = {
                "file": key.split("/", 1)[1],
                "notes": shot.notes,
                "bytes": path.stat().st_size,
                "sha256": _sha256(path),
            }
            if shot.unreadable:
                manifest["tenants"][tenant]["unreadable"] = shot.unreadable
            path.unlink()
        manifest["system"] = {}
        for collection in RESTORE_MERGE:
            path = Path(tmp) / f"{collection}.jsonl.gz"
            records = await _save_system(store, collection, set(tenants) if tenants else None, path)
            key = f"{name}/system/{collection}.jsonl.gz"
            target.put(key, path)
            manifest["system"][collection] = {
                "format": SYSTEM_FORMAT,
                "file": key.split("/", 1)[1],
                "records": records,
                "bytes": path.stat().st_size,
                "sha256": _sha256(path),
            }
            path.unlink()
        manifest["finished_at"] = utcnow().isoformat()
        manifest_path = Path(tmp) / MANIFEST
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        target.put(f"{name}/{MANIFEST}", manifest_path)
    return manifest


def prune(target: Target, keep: int) -> list[str]:
    """Delete all but the newest `keep` complete backups, and unfinished ones older than the
    newest complete one; returns the names deleted."""
    if keep < 1:
        raise BackupError("keep at least one backup")
    complete = backup_names(target)
    doomed = complete[:-keep]
    if complete:
        doomed += [
            name
            for name in target.folders()
            if name.startswith(BACKUP_PREFIX) and name not in complete and name < complete[-1]
        ]
    for name in doomed:
        target.remove_folder(name)
    return sorted(doomed)


def read_manifest(target: Target, name: str | None) -> dict[str, Any]:
    """The manifest of backup `name`, or of the newest complete backup when `name` is None."""
    names = backup_names(target)
    if name is None:
        if not names:
            raise BackupError(f"no complete backup in {target.url}")
        name = names[-1]
    elif name not in names:
        raise BackupError(f"no complete backup named {name!r} in {target.url}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MANIFEST
        target.get(f"{name}/{MANIFEST}", path)
        manifest = json.loads(path.read_text())
    if manifest.get("format") != BACKUP_FORMAT:
        raise BackupError(f"{name}: unknown backup format {manifest.get('format')!r}")
    return manifest


@dataclass
class Restored:
    notes: dict[str, int]  # by tenant
    system: dict[str, int]  # records written, by system collection


async def restore(
    store: NoteStore,
    target: Target,
    manifest: dict[str, Any],
    tenants: Sequence[str] | None = None,
    *,
    progress: Callable[[str, int], Progress] = lambda tenant, total: lambda n: None,
) -> Restored:
    """Upsert the notes of `tenants` (default: all in the backup), then merge their system
    records (see the module's doc). A backup made before system records were backed up has
    none, and leaves the deployment's as they are."""
    held = manifest["tenants"]
    if tenants:
        unknown = sorted(set(tenants) - set(held))
        if unknown:
            raise BackupError(f"{manifest['name']} holds no tenant {', '.join(unknown)}")
    chosen = sorted(tenants or held)
    restored = Restored({}, {})

    def fetch(entry: dict[str, Any], path: Path) -> Path:
        target.get(f"{manifest['name']}/{entry['file']}", path)
        if _sha256(path) != entry["sha256"]:
            raise BackupError(f"{manifest['name']}: {entry['file']} is corrupt (checksum)")
        return path

    with tempfile.TemporaryDirectory(prefix="amem-restore-") as tmp:
        for tenant in chosen:
            entry = held[tenant]
            path = fetch(entry, Path(tmp) / f"{tenant}.jsonl.gz")
            restored.notes[tenant] = await load(
                store, tenant, read_lines(path), progress=progress(tenant, entry["notes"])
            )
            path.unlink()
        for collection, entry in manifest.get("system", {}).items():
            if collection not in RESTORE_MERGE or entry.get("format") != SYSTEM_FORMAT:
                raise BackupError(f"{manifest['name']}: unknown system collection {collection!r}")
            path = fetch(entry, Path(tmp) / f"{collection}.jsonl.gz")
            restored.system[collection] = await _load_system(
                store, collection, set(tenants) if tenants else None, path
            )
            path.unlink()
    return restored
