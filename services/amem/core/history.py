"""A note's `evolution_history`: one entry per change the machine made to it (or undid), with
its provenance. Each entry is a dict with `id`, `kind`, `trigger` (the memory whose arrival or
erasure caused it, if any), `before` and `after` (the fields it changed, with their values)
and `at`; evolution's entries also name the `plan`, `model` and `prompt_version`.

Kinds: `evolve` (the note's own construction, links and tags), `update_neighbor` (another
note's evolution rewrote this one), `revert` (an entry undone on request, `reverts` names it),
`erasure` (what an erased note wrote here, undone) and `edit` (the content was changed, so
what the machine had derived from the old content was cleared). An entry whose values were
erased keeps its id, kind, trigger and time, with `before` and `after` empty and `erased: true`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from amem.core.model import Note, utcnow

MAX_HISTORY = 200  # entries kept per note; the oldest are dropped beyond this
# Entries whose `after` values the machine wrote (the others restore earlier values).
DERIVING = ("evolve", "update_neighbor")


def entry(kind: str, before: dict[str, Any], after: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A new history entry (`extra`: trigger, plan, model, prompt_version, ...)."""
    return {
        "id": str(uuid.uuid4()),
        "kind": kind,
        "trigger": extra.pop("trigger", None),
        "before": before,
        "after": after,
        "at": utcnow().isoformat(),
        **extra,
    }


def append(note: Note, new: dict[str, Any]) -> None:
    note.evolution_history = [*note.evolution_history, new][-MAX_HISTORY:]


def erased(old: dict[str, Any]) -> dict[str, Any]:
    """`old` without its values."""
    return {**old, "before": {}, "after": {}, "erased": True}


def derived(note: Note, fields: Iterable[str]) -> set[str]:
    """Of `fields`, those whose current value the machine wrote: an evolution's entry (not
    erased) wrote exactly that value. A value the caller gave, at creation or since by PATCH,
    is not derived (the caller's changes make no entries); one that an erasure or a revert put
    back is derived if an evolution had written it first."""
    return {
        name
        for name in fields
        if any(
            old.get("kind") in DERIVING
            and name in (old.get("after") or {})
            and old["after"][name] == getattr(note, name)
            for old in note.evolution_history
        )
    }


def links_added(note: Note) -> set[str]:
    """The links the note's own evolution added (an `evolve` entry's links after, not before)."""
    added: set[str] = set()
    for old in note.evolution_history:
        if old.get("kind") == "evolve" and "links" in (old.get("after") or {}):
            added |= set(old["after"]["links"]) - set(old["before"].get("links", []))
    return added


def original(note: Note, name: str) -> Any:
    """The value of field `name` before the machine first changed it since the content last
    changed (the caller's, or empty); None when the history cannot tell (trimmed)."""
    entries = note.evolution_history
    edits = [i for i, old in enumerate(entries) if old.get("kind") == "edit"]
    since = edits[-1] + 1 if edits else 0  # an edit erased everything before it
    for old in entries[since:]:
        if old.get("erased"):
            # Undone by an erasure, whose entry holds the value it restored, if it was this.
            undoer = next(
                (
                    u
                    for u in entries
                    if u.get("kind") == "erasure" and old["id"] in (u.get("undone") or ())
                ),
                None,
            )
            if undoer is not None and name in undoer["after"]:
                return undoer["after"][name]
            continue
        if old.get("kind") in DERIVING and name in (old.get("after") or {}):
            return old["before"].get(name)
    if edits and name in entries[edits[-1]]["after"]:
        return entries[edits[-1]]["after"][name]
    return None
