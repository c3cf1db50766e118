"""Prompts and the bounded reply schemas for A-MEM's two LLM steps.

Kept lean on purpose (A-MEM's prompts spend ~1,200 tokens per memory operation): one short
system line, the note, and for evolution the neighbours. Neighbours are shown under short
handles (m1, m2, ...), as A-MEM's own prompt numbers them, not under their UUIDs: a UUID costs
~25 tokens each time the model writes it, and a small model copies it into tags too. With UUIDs,
Gemma 3 270M's evolution replies for three neighbours ran to 550-850 tokens and hit the cap;
`resolve` maps the handles back. Every reply is validated against these schemas; the bounds also
go into the JSON schema sent to the LLM, so a small model cannot ramble into a truncated reply so
easily. Bump PROMPT_VERSION with any change: it is recorded in every history entry.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

PROMPT_VERSION = "2026-12-02.1"

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


_HANDLE = re.compile(r"m\d+")


def handles(count: int) -> list[str]:
    """The names neighbours go by in an evolution prompt and its reply."""
    return [f"m{i}" for i in range(1, count + 1)]


def _describe(content: str, context: str, tags: list[str]) -> str:
    return f"{content}\n  context: {context or '-'}; tags: {', '.join(tags) or '-'}"


def evolution_prompt(new: dict[str, Any], neighbours: list[dict[str, Any]]) -> str:
    listed = "\n".join(
        f"[{handle}] {_describe(n['content'], n['context'], n['tags'])}"
        for handle, n in zip(handles(len(neighbours)), neighbours, strict=True)
    )
    return (
        f"New note:\n{_describe(new['content'], new['context'], new['tags'])}\n\n"
        f"Nearest existing notes:\n{listed}\n\n"
        "Return links: the handles (m1, m2, ...) of existing notes the new note is really "
        "related to; tags: the new note's tags, refined in light of its neighbours; "
        "neighbour_updates: for each existing note whose context or tags should change because "
        "of the new note, its handle as id, with its new context and tags. Use only the handles "
        "listed above; empty lists are fine."
    )


def evolution_schema(count: int) -> dict[str, Any]:
    """The JSON schema of an Evolution reply about `count` neighbours, with ids restricted to
    their handles."""
    schema = Evolution.model_json_schema()
    ids = {"type": "string", "enum": handles(count)}
    bound = min(5, count)  # a small model otherwise repeats ids to fill the list
    schema["properties"]["links"].update(items=ids, maxItems=bound)
    schema["properties"]["neighbour_updates"]["maxItems"] = min(3, bound)
    schema["$defs"]["NeighbourUpdate"]["properties"]["id"] = ids
    return schema


def resolve(reply: Evolution, ids: list[str]) -> Evolution:
    """`reply` with the handles of `ids` (in prompt order) replaced by those ids. Anything else
    in an id field is left as it is, for the engine to reject as an id it never showed; a
    handle the model wrote as a tag (Gemma 3 270M often does) is dropped."""
    real = dict(zip(handles(len(ids)), ids, strict=True))

    def tags(values: list[str]) -> list[str]:
        return [t for t in values if not _HANDLE.fullmatch(t)]

    return Evolution(
        links=[real.get(i, i) for i in reply.links],
        tags=tags(reply.tags),
        neighbour_updates=[
            u.model_copy(update={"id": real.get(u.id, u.id), "tags": tags(u.tags)})
            for u in reply.neighbour_updates
        ],
    )
