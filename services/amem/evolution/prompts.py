"""Prompts and the bounded reply schemas for A-MEM's two LLM steps.

Kept lean on purpose (A-MEM's prompts spend ~1,200 tokens per memory operation): one short
system line, the note, and for evolution the neighbours with their real ids. Every reply is
validated against these schemas; the bounds also go into the JSON schema sent to the LLM, so a
small model cannot ramble into a truncated reply so easily. Bump PROMPT_VERSION with any change:
it is recorded in every history entry.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

PROMPT_VERSION = "2026-11-25.1"

Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Sentence = Annotated[str, StringConstraints(strip_whitespace=True, max_length=300)]

SYSTEM = "You organise an AI agent's memory notes. Answer with JSON only."


class Construction(BaseModel):
    """Note construction: what the LLM writes for a new note."""

    model_config = ConfigDict(extra="ignore")

    keywords: Annotated[list[Word], Field(min_length=1, max_length=6)]
    context: Sentence
    tags: Annotated[list[Word], Field(min_length=1, max_length=5)]


class NeighbourUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    context: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
    tags: Annotated[list[Word], Field(max_length=4)]


class Evolution(BaseModel):
    """Link generation and memory evolution for a new note and its nearest neighbours."""

    model_config = ConfigDict(extra="ignore")

    links: Annotated[list[str], Field(max_length=5)]
    tags: Annotated[list[Word], Field(max_length=5)]
    neighbour_updates: Annotated[list[NeighbourUpdate], Field(max_length=3)]


def construction_prompt(content: str, previous: str | None = None) -> str:
    before = f"It follows this earlier turn of a conversation:\n{previous}\n\n" if previous else ""
    return (
        f"Note:\n{content}\n\n{before}"
        "Return keywords (up to 5 salient terms from the note), context (one sentence: what "
        "the note is about and why it matters) and tags (up to 4 broad categories)."
    )


def _describe(note_id: str, content: str, context: str, tags: list[str]) -> str:
    return f"[{note_id}] {content}\n  context: {context or '-'}; tags: {', '.join(tags) or '-'}"


def evolution_prompt(new: dict[str, Any], neighbours: list[dict[str, Any]]) -> str:
    listed = "\n".join(
        _describe(n["id"], n["content"], n["context"], n["tags"]) for n in neighbours
    )
    return (
        f"New note:\n{_describe(new['id'], new['content'], new['context'], new['tags'])}\n\n"
        f"Nearest existing notes:\n{listed}\n\n"
        "Return links: ids of existing notes the new note is really related to; tags: the "
        "new note's tags, refined in light of its neighbours; neighbour_updates: for each "
        "existing note whose context or tags should change because of the new note, its id "
        "with its new context and tags. Use only ids listed above; empty lists are fine."
    )


def evolution_schema(neighbour_ids: list[str]) -> dict[str, Any]:
    """The JSON schema of an Evolution reply, with ids restricted to the real neighbour ids."""
    schema = Evolution.model_json_schema()
    ids = {"type": "string", "enum": neighbour_ids}
    bound = min(5, len(neighbour_ids))  # a small model otherwise repeats ids to fill the list
    schema["properties"]["links"].update(items=ids, maxItems=bound)
    schema["properties"]["neighbour_updates"]["maxItems"] = min(3, bound)
    schema["$defs"]["NeighbourUpdate"]["properties"]["id"] = ids
    return schema
