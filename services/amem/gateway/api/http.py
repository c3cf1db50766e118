"""The REST API's HTTP conventions, shared by its routes: conditional requests (If-Match against
the ETag, which is a memory's version), idempotency keys for writes, and opaque listing
cursors."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Annotated

import orjson
from fastapi import Header, Response
from pydantic import BaseModel

from amem.core.errors import InvalidArgument
from amem.core.model import Note, NoteFilter

IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='Change only if the memory is at one of these versions (its ETag, e.g. "3"; '
        "a list, or *). Weak tags (W/...) never match.",
    ),
]


def allowed_versions(value: str | None) -> frozenset[int] | None:
    """The versions an If-Match header allows; None when it sets no condition (absent, or *:
    the memory must exist, which it must anyway)."""
    if value is None or value.strip() == "*":
        return None
    versions: set[int] = set()
    for tag in value.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            continue  # RFC 9110: If-Match compares strongly, so a weak tag never matches
        if not (len(tag) >= 3 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit()):
            raise InvalidArgument(f'If-Match: {tag!r} is not an entity tag such as "3"')
        if int(tag[1:-1]) < 2**63:  # a version no note reaches matches nothing
            versions.add(int(tag[1:-1]))
    return frozenset(versions)


def set_etag(response: Response, note: Note) -> None:
    response.headers["ETag"] = f'"{note.version}"'


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="A key of your choosing (1-255 printable ASCII characters, e.g. a UUID) "
        "that makes the write safe to retry: a repeat of the request with the same key "
        "writes nothing and answers the memories it created (as they are now, with "
        "Idempotent-Replayed: true), for as long as they exist; the same key with another "
        "request is refused (422).",
    ),
]
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


def idempotency_of(key: str | None, path: str, body: BaseModel) -> tuple[str, str] | None:
    """The key and a digest of the request it names, or None without a key."""
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.match(key):
        raise InvalidArgument("Idempotency-Key: 1-255 printable ASCII characters, no spaces")
    digest = hashlib.sha256(f"{path}\x00{body.model_dump_json()}".encode()).hexdigest()
    return key, digest


def mark_replayed(response: Response, replayed: bool) -> None:
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"


def _cursor_key(flt: NoteFilter) -> str:
    return hashlib.sha256(flt.model_dump_json().encode()).hexdigest()[:16]


def encode_cursor(offset: int, flt: NoteFilter) -> str:
    raw = orjson.dumps({"o": offset, "f": _cursor_key(flt)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# The largest offset a cursor may carry (ChromaDB takes offsets as 32-bit integers).
MAX_OFFSET = 2**31 - 1


def decode_cursor(cursor: str, flt: NoteFilter) -> int:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        offset, key = data["o"], data["f"]
    except Exception as exc:
        raise InvalidArgument("cursor is not valid: pass next_cursor back unchanged") from exc
    if type(offset) is not int or not 0 <= offset <= MAX_OFFSET:
        raise InvalidArgument("cursor is not valid: pass next_cursor back unchanged")
    if key != _cursor_key(flt):
        raise InvalidArgument("cursor belongs to a listing with other filters")
    return offset
