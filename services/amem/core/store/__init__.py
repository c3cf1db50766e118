"""The note store: ChromaDB, reached over its HTTP API, is the system of record.

- `codec`: a note as one Chroma record, a filter as a where clause, times as microseconds;
- `transport`: the client factory, and each call bounded, traced, timed and its errors
  translated into the taxonomy;
- `notes`: `NoteStore`, a tenant's notes (one collection per tenant);
- `system`: amem's own collections (managed keys, LLM usage) and their record codecs.
"""

from amem.core.store.codec import (
    from_micros,
    from_record,
    to_metadata,
    to_micros,
    to_where,
)
from amem.core.store.notes import NoteStore
from amem.core.store.system import (
    API_KEYS_COLLECTION,
    RESTORE_MERGE,
    USAGE_COLLECTION,
    ManagedKey,
    SystemCollection,
)
from amem.core.store.transport import CHROMA_SECONDS, chroma_call

__all__ = [
    "API_KEYS_COLLECTION",
    "CHROMA_SECONDS",
    "RESTORE_MERGE",
    "USAGE_COLLECTION",
    "ManagedKey",
    "NoteStore",
    "SystemCollection",
    "chroma_call",
    "from_micros",
    "from_record",
    "to_metadata",
    "to_micros",
    "to_where",
]
