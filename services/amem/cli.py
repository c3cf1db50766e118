"""The `amem` command: `amem run` starts the whole system locally in the foreground; `backup`,
`restore`, `backups`, `export` and `import` move notes between ChromaDB and files or buckets;
`doctor` audits the store and `reindex` repairs a tenant's vector index (docs/operations.md);
`mcp` serves the MCP tools over stdio."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amem.core.store import NoteStore


def run(args: argparse.Namespace) -> int:
    from amem.devstack import LocalStack, ProcessDied

    stack = LocalStack(
        data_dir=Path(os.environ.get("AMEM_DATA_DIR", "data")).resolve(),
        gateway_port=int(os.environ.get("AMEM_PORT", "8080")),
        dev_api_key=os.environ.get("AMEM_DEV_API_KEY", "amem-dev-key"),
        log_dir=None,  # children write to this terminal
    )

    def on_signal(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python then leaves it
    # ignored; `amem run` must stop on Ctrl-C however it was started.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"amem: starting ChromaDB, embedding, evolution and gateway (data in {stack.data_dir})")
    try:
        stack.start()
        key = stack.dev_api_key
        print(
            f"""
amem is serving the REST API on {stack.gateway_url}  (OpenAPI docs: {stack.gateway_url}/docs)
development API key: {key}
ChromaDB on port {stack.chroma_port}, the evolution service on {stack.evolution_target}
(`amem doctor --chroma-port {stack.chroma_port}`, `amem reindex --evolution-target ...`)

  curl -s -X POST {stack.gateway_url}/v1/memories -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{{"content": "The deploy key rotates every Monday"}}'
  curl -s -X POST {stack.gateway_url}/v1/memories/search -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' -d '{{"query": "when do keys rotate?", "k": 3}}'

Ctrl-C stops everything.""",
            flush=True,
        )
        while True:
            stack.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\namem: stopping", flush=True)
        return 0
    except (ProcessDied, TimeoutError) as exc:
        print(f"amem: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


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


@contextlib.asynccontextmanager
async def _store(args: argparse.Namespace):
    from amem.core.store import NoteStore

    store = NoteStore(args.chroma_host, args.chroma_port, timeout_s=args.chroma_timeout)
    try:
        yield store
    finally:
        await store.close()


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


async def _doctor(args: argparse.Namespace, store: NoteStore) -> int:
    """Audit every note (or a sample) of each tenant: found by its own vector, and no link or
    `follows` naming a note that is gone."""
    import json

    from amem.core import repair

    tenants = args.tenant or sorted(await store.tenants())
    report: dict[str, dict] = {}
    for tenant in tenants:
        ids = (
            await repair.sample(store, tenant, args.sample)
            if args.sample
            else await store.all_ids(tenant)
        )
        audit = await repair.audit(store, tenant, ids)
        entry: dict = {
            "notes": await store.count(tenant),
            "checked": audit.checked,
            "unreachable": audit.unreachable,
            "undetermined": audit.undetermined,
        }
        if not args.sample:  # dangling references need every note
            present = set(ids)
            links: dict[str, list[str]] = {}
            follows: dict[str, str] = {}
            for start in range(0, len(ids), 500):
                for note in await store.get_many(tenant, ids[start : start + 500]):
                    if missing := [i for i in note.links if i not in present]:
                        links[note.id] = missing
                    if note.follows is not None and note.follows not in present:
                        follows[note.id] = note.follows
            entry.update(dangling_links=links, dangling_follows=follows)
        report[tenant] = entry
    client = await store.client()
    async with store.call("list_collections"):
        names = [c.name for c in await client.list_collections()]
    leftovers = sorted(n for n in names if n.startswith(repair.REBUILD_PREFIX))
    failing = any(
        e["unreachable"] or e.get("dangling_links") or e.get("dangling_follows")
        for e in report.values()
    )
    if args.json:
        print(json.dumps({"tenants": report, "leftover_collections": leftovers}, indent=2))
        return int(failing)
    for tenant, e in report.items():
        line = (
            f"{tenant}: {e['notes']} notes, {e['checked']} checked, "
            f"{len(e['unreachable'])} unreachable by their own vector"
        )
        if e["undetermined"]:
            line += f", {len(e['undetermined'])} undetermined (identical vectors)"
        if "dangling_links" in e:
            line += (
                f", {len(e['dangling_links'])} with dangling links, "
                f"{len(e['dangling_follows'])} with a dangling follows"
            )
        print(line)
        for note_id in e["unreachable"][:20]:
            print(f"  unreachable: {note_id}")
        if e["unreachable"]:
            print(f"  repair: amem reindex --tenant {tenant}")
    for name in leftovers:
        if name.endswith("-old") or "-squatter-" in name:
            print(
                f"leftover collection of an interrupted rebuild: {name}: may hold writes the "
                "live collection lacks; compare before deleting it (docs/operations.md)"
            )
        else:
            print(f"leftover copy of an interrupted rebuild: {name} (safe to delete)")
    return int(failing)


async def _reindex(args: argparse.Namespace) -> int:
    from amem.evolution.client import EvolutionClient

    client = EvolutionClient(args.evolution_target)
    try:
        print(f"{args.tenant}: rebuilding its collection on the tenant's evolution owner...")
        done = await client.reindex(args.tenant, timeout_s=args.timeout)
    finally:
        await client.close()
    print(
        f"{args.tenant}: {done.notes} notes in the rebuilt collection "
        f"({done.copied} copies in {done.passes} passes, {done.seconds:.1f}s)"
    )
    return 0


def _mcp(args: argparse.Namespace) -> int:
    """amem's MCP tools over stdio, proxying to the gateway at --url with AMEM_API_KEY. Only
    the protocol goes to stdout; logs go to stderr."""
    import logging

    from amem.client import AsyncClient
    from amem.mcp import create_mcp, fixed_client

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if not os.environ.get("AMEM_API_KEY"):
        print("amem: set AMEM_API_KEY to the API key the tools should use", file=sys.stderr)
        return 2
    server = create_mcp(fixed_client(lambda: AsyncClient(args.url)))
    asyncio.run(server.run_stdio_async())
    return 0


def _keys(args: argparse.Namespace) -> int:
    """The admin API, over HTTP, with the admin key from AMEM_ADMIN_KEY."""
    import httpx

    admin_key = os.environ.get("AMEM_ADMIN_KEY")
    if not admin_key:
        print("amem: set AMEM_ADMIN_KEY to an admin key", file=sys.stderr)
        return 2
    base = args.url.rstrip("/") + "/v1/admin/keys"
    headers = {"Authorization": f"Bearer {admin_key}"}
    if args.action == "create":
        body = {"tenant": args.tenant, "name": args.name or ""}
        if args.expires_in:
            body["expires_in_s"] = args.expires_in
        request = ("POST", base, body, None)
    elif args.action == "list":
        params = {"include_revoked": str(args.all).lower()}
        if args.tenant:
            params["tenant"] = args.tenant
        request = ("GET", base, None, params)
    elif args.action == "rotate":
        request = ("POST", f"{base}/{args.key_id}:rotate", {"grace_s": args.grace}, None)
    else:
        request = ("DELETE", f"{base}/{args.key_id}", None, None)
    method, url, body, params = request
    try:
        r = httpx.request(method, url, json=body, params=params, headers=headers, timeout=30)
    except httpx.TransportError as exc:
        print(f"amem: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    if r.status_code >= 400:
        print(f"amem: {r.status_code} {r.json().get('message', r.text)}", file=sys.stderr)
        return 1
    data = r.json()
    if args.action == "list":
        for key in data["keys"]:
            if key["revoked_at"]:
                ends = f"revoked {key['revoked_at']}"
            elif key["expires_at"]:
                ends = f"expires {key['expires_at']}"
            else:
                ends = "no expiry"
            print(f"{key['id']}  {key['tenant']}  {key['name'] or '-'}  {ends}")
    elif "key" in data:
        print(f"{data['id']} for tenant {data['tenant']}; the key, shown once:", file=sys.stderr)
        print(data["key"])
    else:
        print(f"{data['id']} revoked")
    return 0


def _file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value}: no such file")
    return path


def _tenant(value: str) -> str:
    from amem.core.model import TENANT_PATTERN

    if not re.match(TENANT_PATTERN, value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a tenant id ({TENANT_PATTERN})")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="amem", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run", help="run ChromaDB, the embedding, evolution and gateway services locally"
    )
    chroma = argparse.ArgumentParser(add_help=False)
    chroma.add_argument(
        "--chroma-host", default=os.environ.get("AMEM_CHROMA_HOST", "127.0.0.1"), metavar="HOST"
    )
    chroma.add_argument(
        "--chroma-port", type=int, default=int(os.environ.get("AMEM_CHROMA_PORT", "8000"))
    )
    chroma.add_argument("--chroma-timeout", type=float, default=60.0, metavar="SECONDS")

    p = sub.add_parser(
        "backup", parents=[chroma], help="snapshot tenants to a directory or s3://bucket/prefix"
    )
    p.add_argument("destination", help="a directory, or s3://bucket/prefix")
    p.add_argument("--tenant", action="append", type=_tenant, help="only this tenant (repeat)")
    p.add_argument("--keep", type=int, help="then delete all but the newest KEEP backups")
    p = sub.add_parser("restore", parents=[chroma], help="write a backup's notes back")
    p.add_argument("source", help="where the backups are: a directory, or s3://bucket/prefix")
    p.add_argument("--backup", metavar="NAME", help="which backup (default: the newest)")
    p.add_argument("--tenant", action="append", type=_tenant, help="only this tenant (repeat)")
    p = sub.add_parser("backups", help="list the complete backups at a location")
    p.add_argument("location")
    p = sub.add_parser("export", parents=[chroma], help="one tenant's notes as JSON Lines")
    p.add_argument("--tenant", required=True, type=_tenant)
    p.add_argument("--output", "-o", default="-", help="file (.gz compresses), - for stdout")
    p = sub.add_parser("import", parents=[chroma], help="JSON Lines notes into a tenant")
    p.add_argument("file", type=_file, help="a note file (.jsonl or .jsonl.gz)")
    p.add_argument("--tenant", required=True, type=_tenant)
    p.add_argument(
        "--embedding-target",
        default=os.environ.get("AMEM_EMBEDDING_TARGET"),
        help="embedding service (host:port) for lines without an embedding",
    )
    p = sub.add_parser(
        "doctor",
        parents=[chroma],
        help="audit the store: every note found by its own vector, no dangling link or follows",
    )
    p.add_argument("--tenant", action="append", type=_tenant, help="only this tenant (repeat)")
    p.add_argument("--sample", type=int, metavar="N", help="audit N notes per tenant, not all")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p = sub.add_parser(
        "reindex", help="rebuild a tenant's vector index online (on its evolution owner)"
    )
    p.add_argument("--tenant", required=True, type=_tenant)
    p.add_argument(
        "--evolution-target",
        default=os.environ.get("AMEM_EVOLUTION_TARGET", "127.0.0.1:50052"),
        help="the evolution service (host:port); default AMEM_EVOLUTION_TARGET",
    )
    p.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS")
    p = sub.add_parser(
        "mcp", help="amem's MCP tools over stdio, proxying to a gateway (AMEM_API_KEY)"
    )
    p.add_argument("--url", default=os.environ.get("AMEM_URL", "http://127.0.0.1:8080"))
    p = sub.add_parser("keys", help="manage tenants' API keys (admin key in AMEM_ADMIN_KEY)")
    p.add_argument("--url", default=os.environ.get("AMEM_URL", "http://127.0.0.1:8080"))
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("create", help="a new key for a tenant (printed once)")
    a.add_argument("--tenant", required=True, type=_tenant)
    a.add_argument("--name", help="what the key is for")
    a.add_argument("--expires-in", type=int, metavar="SECONDS")
    a = actions.add_parser("list", help="keys (never the keys themselves)")
    a.add_argument("--tenant", type=_tenant)
    a.add_argument("--all", action="store_true", help="include revoked keys")
    a = actions.add_parser("rotate", help="a new key; the old one works for --grace seconds")
    a.add_argument("key_id")
    a.add_argument("--grace", type=int, default=3600, metavar="SECONDS")
    a = actions.add_parser("revoke", help="stop a key working")
    a.add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except ModuleNotFoundError as exc:  # `pip install amem` is the client alone
        extra = "mcp" if args.command == "mcp" else "server"
        print(
            f"amem: `amem {args.command}` needs packages that are not installed ({exc.name}): "
            f"pip install 'amem[{extra}]'",
            file=sys.stderr,
        )
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return run(args)
    if args.command == "keys":
        return _keys(args)
    if args.command == "mcp":
        return _mcp(args)
    if args.command == "backups":
        return _main_async(_backups(args))
    if args.command == "reindex":
        return _main_async(_reindex(args))
    command = {
        "backup": _backup,
        "restore": _restore,
        "export": _export,
        "import": _import,
        "doctor": _doctor,
    }

    async def with_store() -> int:
        async with _store(args) as store:
            return await command[args.command](args, store)

    return _main_async(with_store())


def _main_async(work) -> int:
    from amem.backup.notes import BackupError
    from amem.core.errors import AmemError

    try:
        return asyncio.run(work)
    except (BackupError, AmemError, ValueError, OSError) as exc:
        print(f"amem: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
