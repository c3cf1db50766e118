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
import sys
from pathlib import Path

from amem.cli.backup import _backup, _backups, _export, _import, _restore
from amem.cli.doctor import _doctor, _reindex
from amem.cli.gateway import _keys, _mcp
from amem.cli.local import run


@contextlib.asynccontextmanager
async def _store(args: argparse.Namespace):
    from amem.core.store import NoteStore

    store = NoteStore(args.chroma_host, args.chroma_port, timeout_s=args.chroma_timeout)
    try:
        yield store
    finally:
        await store.close()


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
    p.add_argument(
        "--re-embed",
        action="store_true",
        help="embed every memory again with the model the embedding service serves now "
        "(after changing the model; docs/operations.md)",
    )
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
