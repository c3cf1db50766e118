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

The receipt (this module) lists every note changed and how. The scrub is a history rule
(`core/history.py::scrub`); it also undoes what a note's evolution wrote into its neighbours
when the note's content changes (entry kind `edit`): that text was derived from the old
content. The tenant's writer (core/writer.py) runs both.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


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
