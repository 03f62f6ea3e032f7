"""The VectorStore protocol: what a knowledge base needs from wherever its chunks live.

Every write is idempotent (upserts keyed by chunk id or text hash) so a replayed batch
after a crash is harmless. Filters are a small dict: ``{"source": "a.md"}``,
``{"source": ["a.md", "b.md"]}``, ``{"tags": "faq"}`` (any of the given tags).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ragtune.errors import InputError
from ragtune.types import Chunk

FILTER_KEYS = ("source", "tags")


@dataclass
class StoredHit:
    """One row found by a store search; ``score`` is cosine similarity (dense) or BM25 (lexical)."""

    id: str
    source: str
    text: str
    position: int
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    vector: np.ndarray | None = None


class VectorStore(Protocol):
    dimension: int

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray, versions: Sequence[str]) -> None:
        """Insert or replace chunks by id; ``versions[i]`` is the content hash of chunk i's document."""

    def delete(self, source: str, keep_version: str | None = None) -> int:
        """Delete a source's chunks (all, or those not of ``keep_version``); return how many."""

    def dense_search(self, vector: np.ndarray, k: int, where: dict | None = None) -> list[StoredHit]:
        """Nearest chunks by cosine similarity, filters applied before the search."""

    def lexical_search(self, query: str, k: int, where: dict | None = None) -> list[StoredHit]:
        """Best chunks by BM25, filters applied before the search; hits carry their vectors."""

    def source_versions(self) -> dict[tuple[str, str], int]:
        """``(source, version) → chunk count`` for everything stored."""

    def cached_vectors(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Vectors already computed for these text hashes (the embedding cache)."""

    def cache_vectors(self, text_hashes: Sequence[str], vectors: np.ndarray) -> None:
        """Remember vectors by text hash, so the same text is never embedded twice."""

    def chunks(self) -> list[Chunk]:
        """Every stored chunk, by source and position."""

    def count(self) -> int:
        """How many chunks are stored."""

    def optimize(self) -> None:
        """Fold new rows into the indexes and drop old versions (called after an ingestion)."""


def check_filter(where: dict | None) -> dict[str, list[str]]:
    """Validate a filter dict and turn each value into a list of strings."""
    out: dict[str, list[str]] = {}
    for key, value in (where or {}).items():
        if key not in FILTER_KEYS:
            raise InputError(f"search filter '{key}': unknown; filter on {' or '.join(FILTER_KEYS)}")
        values = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(v, str) for v in values):
            raise InputError(f"search filter '{key}': expected a string or a list of strings")
        out[key] = values
    return out
