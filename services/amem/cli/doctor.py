"""`amem doctor` audits the store; `amem reindex` repairs a tenant's vector index
(docs/operations.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amem.core.store import NoteStore


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
        how = "re-embedding its memories" if args.re_embed else "rebuilding its collection"
        print(f"{args.tenant}: {how} on the tenant's evolution owner...")
        done = await client.reindex(args.tenant, timeout_s=args.timeout, re_embed=args.re_embed)
    finally:
        await client.close()
    print(
        f"{args.tenant}: {done.notes} notes in the rebuilt collection "
        f"({done.copied} copies in {done.passes} passes, {done.seconds:.1f}s)"
    )
    return 0
