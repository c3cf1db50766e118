"""`amem backup`, `restore`, `backups`, `export` and `import`: notes between ChromaDB and files
or buckets (amem.backup), with a progress bar per tenant."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amem.core.store import NoteStore


class _Bars:
    """One progress bar per tenant (on a terminal; tqdm stays quiet in a CronJob's log)."""

    def __init__(self, verb: str) -> None:
        self._verb = verb
        self._bar = None

    def __call__(self, tenant: str, total: int):
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(total=total, desc=f"{self._verb} {tenant}", unit="note", disable=None)
        return self._bar.update

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


async def _backup(args: argparse.Namespace, store: NoteStore) -> int:
    from amem.backup import notes
    from amem.backup.targets import open_target

    target = open_target(args.destination)
    bars = _Bars("backing up")
    try:
        manifest = await notes.backup(store, target, args.tenant, progress=bars)
    finally:
        bars.close()
    count = sum(t["notes"] for t in manifest["tenants"].values())
    tenants = len(manifest["tenants"])
    print(f"{manifest['name']}: {count} notes of {tenants} tenants in {target.url}")
    for collection, entry in manifest["system"].items():
        print(f"{collection}: {entry['records']} records")
    unreadable = {t: e["unreadable"] for t, e in manifest["tenants"].items() if "unreadable" in e}
    if args.keep and not unreadable:
        for name in notes.prune(target, args.keep):
            print(f"deleted {name} (keeping the newest {args.keep})")
    return _report_unreadable(unreadable)


def _report_unreadable(unreadable: dict[str, dict[str, str]]) -> int:
    """Name the records left out of a backup or export; 1 when there were any, else 0."""
    for tenant, records in unreadable.items():
        for note_id, why in records.items():
            print(f"amem: {tenant}: record {note_id} left out, unreadable: {why}", file=sys.stderr)
    if unreadable:
        total = sum(len(r) for r in unreadable.values())
        print(
            f"amem: {total} unreadable records left out (everything else was written; "
            "older backups were kept)",
            file=sys.stderr,
        )
        return 1
    return 0


async def _restore(args: argparse.Namespace, store: NoteStore) -> int:
    from amem.backup import notes
    from amem.backup.targets import open_target

    target = open_target(args.source)
    manifest = notes.read_manifest(target, args.backup)
    bars = _Bars("restoring")
    try:
        restored = await notes.restore(store, target, manifest, args.tenant, progress=bars)
    finally:
        bars.close()
    for tenant, count in restored.notes.items():
        print(f"{tenant}: {count} notes restored from {manifest['name']}")
    for collection, count in restored.system.items():
        print(f"{collection}: {count} records restored (the others were there already)")
    return 0


async def _backups(args: argparse.Namespace, store: NoteStore | None = None) -> int:
    from amem.backup import notes
    from amem.backup.targets import open_target

    target = open_target(args.location)
    for name in notes.backup_names(target):
        print(name)
    return 0


async def _export(args: argparse.Namespace, store: NoteStore) -> int:
    import gzip

    from amem.backup import notes

    if args.tenant not in await store.tenants():
        raise notes.BackupError(f"no such tenant: {args.tenant}")
    bars = _Bars("exporting")
    total = await store.count(args.tenant)
    try:
        if args.output == "-":
            shot = await notes.snapshot(
                store, args.tenant, sys.stdout.buffer, bars(args.tenant, total)
            )
        else:
            opener = gzip.open if args.output.endswith(".gz") else open
            with opener(args.output, "wb") as out:
                shot = await notes.snapshot(store, args.tenant, out, bars(args.tenant, total))
    finally:
        bars.close()
    print(f"{args.tenant}: {shot.notes} notes exported", file=sys.stderr)
    return _report_unreadable({args.tenant: shot.unreadable} if shot.unreadable else {})


async def _import(args: argparse.Namespace, store: NoteStore) -> int:
    from amem.backup import notes
    from amem.embedding.client import EmbeddingClient

    embedder = EmbeddingClient(args.embedding_target) if args.embedding_target else None

    async def embed(texts: list[str]) -> list[list[float]]:
        assert embedder is not None
        return (await embedder.embed(texts, background=True)).vectors

    bars = _Bars("importing")
    try:
        path = args.file
        # Validate the whole file before writing anything: a bad line leaves the tenant as is.
        total = sum(1 for _ in notes.read_lines(path))
        count = await notes.load(
            store,
            args.tenant,
            notes.read_lines(path),
            embed=embed if embedder else None,
            progress=bars(args.tenant, total),
        )
    finally:
        bars.close()
        if embedder:
            await embedder.close()
    print(f"{args.tenant}: {count} notes imported", file=sys.stderr)
    return 0
