"""Erasure that follows evolution.

A-MEM's evolution copies what a new note says into its neighbours: their context and tags are
rewritten on its behalf. Deleting the note alone would leave that text behind. So erasing
notes also scrubs every neighbour they rewrote, found through the neighbour's `influenced_by`
index and its history's provenance (`update_neighbor` entries name their `trigger`):

- each field an erased note rewrote goes back to its value from before the first such
  rewrite; later rewrites of that field (by any note) are undone with it, because they started
  from text the erased note had put there;
- the undone history entries keep their ids, kind, trigger and time but lose their before and
  after values (`{}`, with `erased: true`), and a new `erasure` entry records what was
  restored (its `after`);
- links to the erased notes are removed, and `follows` pointers to them cleared.

The receipt lists every note changed and how. The same scrub undoes what a note's evolution
wrote into its neighbours when the note's content changes (entry kind `edit`): that text was
derived from the old content. The tenant's writer (core/writer.py) runs both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from amem.core import history
from amem.core.model import Note


class ScrubbedMemory(BaseModel):
    memory_id: str
    fields: list[str] = Field(
        description="Fields restored to their value from before an erased memory rewrote them."
    )
    undone: list[str] = Field(description="History entries undone (their values are erased).")
    later: list[str] = Field(
        description="Of those, entries of other memories that built on the erased text."
    )


class ErasureReceipt(BaseModel):
    """What an erasure changed: the memories deleted, and every other memory it touched."""

    erased: list[str] = Field(description="Memories deleted.")
    unlinked: list[str] = Field(description="Memories whose links to them were removed.")
    unfollowed: list[str] = Field(
        default=[],
        description="Memories whose `follows` named an erased memory; it is cleared.",
    )
    scrubbed: list[ScrubbedMemory] = Field(
        description="Memories whose text evolution had rewritten on behalf of an erased one, "
        "restored (see docs/operations.md, Erasure)."
    )
    at: datetime


def scrub(
    note: Note, gone: set[str], *, kind: str = "erasure"
) -> tuple[Note, ScrubbedMemory] | None:
    """`note` with what the notes in `gone` wrote into it undone, and the receipt line for it;
    None when none of them rewrote it. `kind` names the history entry that records it
    (`erasure`, or `edit` when the notes' content changed)."""
    entries = note.evolution_history
    first_by_field: dict[str, int] = {}
    for i, old in enumerate(entries):
        if old.get("kind") == "update_neighbor" and old.get("trigger") in gone:
            for field in old.get("after") or {}:
                first_by_field.setdefault(field, i)
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
    for field, first in first_by_field.items():
        restored[field] = entries[first]["before"][field]
        for old in entries[first:]:
            if field in (old.get("after") or {}) or field in (old.get("before") or {}):
                if old["id"] not in undone:
                    undone.append(old["id"])
                    if old.get("trigger") not in gone:
                        later.append(old["id"])
    for field, value in restored.items():
        setattr(updated, field, value)
    updated.evolution_history = [
        history.erased(old) if old["id"] in undone else old for old in entries
    ]
    triggers = sorted(gone & {e.get("trigger") for e in entries})
    # An erasure names the erased memories; an edit, the memory whose content changed.
    named = {"erased_memories": triggers} if kind == "erasure" else {"edited_memories": triggers}
    history.append(updated, history.entry(kind, {}, restored, undone=undone, **named))
    updated.influenced_by = [i for i in note.influenced_by if i not in gone]
    return updated, ScrubbedMemory(
        memory_id=note.id, fields=sorted(restored), undone=undone, later=later
    )
