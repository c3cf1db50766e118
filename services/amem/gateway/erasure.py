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
- links to the erased notes are removed (the gateway's unlink step).

The receipt lists every note changed and how.
"""

from __future__ import annotations

from typing import Any

from amem.core.model import Note, utcnow


def scrub(note: Note, gone: set[str]) -> tuple[Note, dict[str, Any]] | None:
    """`note` with what the notes in `gone` wrote into it undone, and the receipt line for it;
    None when none of them rewrote it."""
    history = note.evolution_history
    first_by_field: dict[str, int] = {}
    for i, entry in enumerate(history):
        if entry.get("kind") == "update_neighbor" and entry.get("trigger") in gone:
            for field in entry.get("after") or {}:
                first_by_field.setdefault(field, i)
    if not first_by_field:
        if set(note.influenced_by) & gone:  # indexed, but the history was trimmed or reverted
            updated = note.model_copy(deep=True)
            updated.influenced_by = [i for i in note.influenced_by if i not in gone]
            return updated, {"memory_id": note.id, "fields": [], "undone": [], "later": []}
        return None

    updated = note.model_copy(deep=True)
    restored: dict[str, Any] = {}
    undone: list[str] = []
    later: list[str] = []  # undone entries of other notes, built on the erased text
    for field, first in first_by_field.items():
        restored[field] = history[first]["before"][field]
        for entry in history[first:]:
            if field in (entry.get("after") or {}) or field in (entry.get("before") or {}):
                if entry["id"] not in undone:
                    undone.append(entry["id"])
                    if entry.get("trigger") not in gone:
                        later.append(entry["id"])
    for field, value in restored.items():
        setattr(updated, field, value)
    updated.evolution_history = [
        ({**entry, "before": {}, "after": {}, "erased": True} if entry["id"] in undone else entry)
        for entry in history
    ]
    updated.evolution_history.append(
        {
            "id": f"erasure-{utcnow().strftime('%Y%m%dT%H%M%S%f')}",
            "kind": "erasure",
            "trigger": None,
            "erased_memories": sorted(gone & {e.get("trigger") for e in history}),
            "before": {},
            "after": restored,
            "undone": undone,
            "at": utcnow().isoformat(),
        }
    )
    updated.influenced_by = [i for i in note.influenced_by if i not in gone]
    return updated, {
        "memory_id": note.id,
        "fields": sorted(restored),
        "undone": undone,
        "later": later,
    }
