"""The rules that read and rewrite a note's `evolution_history` (revert, the scrub that erasure
and content edits run, re-derivation). The types, `HistoryEntry` and the evolution `Plan`, are
part of the domain model (core/model.py).

Kinds and fields are documented on `HistoryEntry`. Entries are appended (`append`), never
edited, except that an erasure or a content edit erases an entry's values (`erased`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from amem.core.erasure import ScrubbedMemory
from amem.core.errors import Conflict, NotFound
from amem.core.model import HistoryEntry, Note

MAX_HISTORY = 200  # entries kept per note; the oldest are dropped beyond this


def append(note: Note, new: HistoryEntry) -> None:
    note.evolution_history = [*note.evolution_history, new][-MAX_HISTORY:]


def erased(old: HistoryEntry) -> HistoryEntry:
    """`old` without its values."""
    return old.model_copy(update={"before": {}, "after": {}, "erased": True})


def derived(note: Note, fields: Iterable[str]) -> set[str]:
    """Of `fields`, those whose current value the machine wrote: an evolution's entry (not
    erased) wrote exactly that value. A value the caller gave, at creation or since by PATCH,
    is not derived (the caller's changes make no entries); one that an erasure or a revert put
    back is derived if an evolution had written it first."""
    return {
        name
        for name in fields
        if any(
            old.writes(name) and old.after[name] == getattr(note, name)
            for old in note.evolution_history
        )
    }


def links_added(note: Note) -> set[str]:
    """The links the note's own evolution added (an `evolve` entry's links after, not before)."""
    added: set[str] = set()
    for old in note.evolution_history:
        if old.kind == "evolve" and "links" in old.after:
            added |= set(old.after["links"]) - set(old.before.get("links", []))
    return added


def original(note: Note, name: str) -> Any:
    """The value of field `name` before the machine first changed it since the content last
    changed (the caller's, or empty); None when the history cannot tell (trimmed)."""
    entries = note.evolution_history
    edits = [i for i, old in enumerate(entries) if old.kind == "edit"]
    since = edits[-1] + 1 if edits else 0  # an edit erased everything before it
    for old in entries[since:]:
        if old.erased:
            # Undone by an erasure, whose entry holds the value it restored, if it was this.
            undoer = next(
                (u for u in entries if u.kind == "erasure" and old.id in (u.undone or ())),
                None,
            )
            if undoer is not None and name in undoer.after:
                return undoer.after[name]
            continue
        if old.writes(name):
            return old.before.get(name)
    if edits and name in entries[edits[-1]].after:
        return entries[edits[-1]].after[name]
    return None


def revert(note: Note, entry_id: str) -> Note:
    """`note` with one entry undone: its `before` values restored, which holds only while the
    fields still hold its `after` values (else Conflict), and the revert recorded as a new
    entry (the last). A revert, and an entry whose values were erased, cannot be reverted."""
    entry = next((e for e in note.evolution_history if e.id == entry_id), None)
    if entry is None:
        raise NotFound(f"history entry {entry_id!r} not found on memory {note.id!r}")
    if entry.kind == "revert":
        raise Conflict("a revert cannot itself be reverted; change the fields with PATCH")
    if entry.erased or entry.kind in ("erasure", "edit"):
        raise Conflict(
            "this entry's values were erased (by an erasure, or a change of the "
            "memory's content) and cannot be reverted"
        )
    if any(e.reverts == entry_id for e in note.evolution_history):
        raise Conflict(f"history entry {entry_id!r} was already reverted")
    current = {f: getattr(note, f) for f in entry.after}
    if current != entry.after:
        raise Conflict(
            "the fields changed after this entry; revert the later entries first: "
            + ", ".join(sorted(f for f in current if current[f] != entry.after[f]))
        )
    updated = note.model_copy(update=entry.before)
    append(
        updated,
        HistoryEntry(
            kind="revert",
            before=entry.after,
            after=entry.before,
            trigger=entry.trigger,
            reverts=entry_id,
        ),
    )
    return updated


def scrub(
    note: Note, gone: set[str], *, kind: Literal["erasure", "edit"] = "erasure"
) -> tuple[Note, ScrubbedMemory] | None:
    """`note` with what the notes in `gone` wrote into it undone, and the receipt line for it;
    None when none of them rewrote it. `kind` names the entry that records it: `erasure` (the
    notes are erased), or `edit` (their content changed, so what their evolution wrote here was
    derived from text that is gone). The notes that rewrote it are found through its
    `influenced_by` index and its history's provenance (`update_neighbor` entries name their
    `trigger`):

    - each field a note in `gone` rewrote goes back to its value from before the first such
      rewrite; later rewrites of that field (by any note) are undone with it, because they
      started from text the gone note had put there;
    - the undone entries keep their ids, kind, trigger and time but lose their values
      (`erased`), and a new entry records what was restored (its `after`).
    """
    entries = note.evolution_history
    first_by_field: dict[str, int] = {}
    for i, old in enumerate(entries):
        if old.kind == "update_neighbor" and old.trigger in gone:
            for name in old.after:
                first_by_field.setdefault(name, i)
    if not first_by_field:
        if set(note.influenced_by) & gone:  # indexed, but the history was trimmed or reverted
            updated = note.model_copy(deep=True)
            updated.influenced_by = [i for i in note.influenced_by if i not in gone]
            return updated, ScrubbedMemory(memory_id=note.id, fields=[], undone=[], later=[])
        return None

    updated = note.model_copy(deep=True)
    restored: dict[str, Any] = {}
    undone: list[str] = []
    later: list[str] = []  # undone entries of other notes, built on the erased text
    for name, first in first_by_field.items():
        restored[name] = entries[first].before[name]
        for old in entries[first:]:
            if (name in old.after or name in old.before) and old.id not in undone:
                undone.append(old.id)
                if old.trigger not in gone:
                    later.append(old.id)
    for name, value in restored.items():
        setattr(updated, name, value)
    updated.evolution_history = [erased(old) if old.id in undone else old for old in entries]
    triggers = sorted(gone & {e.trigger for e in entries if e.trigger is not None})
    # An erasure names the erased memories; an edit, the memory whose content changed.
    named = {"erased_memories": triggers} if kind == "erasure" else {"edited_memories": triggers}
    append(updated, HistoryEntry(kind=kind, after=restored, undone=undone, **named))
    updated.influenced_by = [i for i in note.influenced_by if i not in gone]
    return updated, ScrubbedMemory(
        memory_id=note.id, fields=sorted(restored), undone=undone, later=later
    )


def rederive(note: Note, updated: Note, given: set[str], derivable: Iterable[str]) -> set[str]:
    """Clear in `updated` (`note` with a new content) what the machine derived from `note`'s
    content: each `derivable` field an evolution wrote and the caller did not set in the same
    change (`given`) goes back to its original value; links the note's evolution added are
    removed; every entry loses its values, and an `edit` entry records what was cleared.
    Returns the fields changed."""
    cleared: dict[str, Any] = {}
    for name in derived(note, derivable) - given:
        value = original(note, name)
        cleared[name] = value if value is not None else type(getattr(note, name))()
    if "links" not in given:
        added = links_added(note)
        if added & set(note.links):
            cleared["links"] = [link for link in note.links if link not in added]
    for name, value in cleared.items():
        setattr(updated, name, value)
    undone = [old.id for old in note.evolution_history if not old.erased]
    updated.evolution_history = [erased(old) for old in note.evolution_history]
    append(updated, HistoryEntry(kind="edit", after=cleared, undone=undone))
    return {"evolution_history", *cleared}
