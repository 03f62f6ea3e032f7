"""Vector stores, picked by name (``settings.store.backend``)."""

from __future__ import annotations

from pathlib import Path

from ragtune.errors import ConfigError
from ragtune.index.stores.base import StoredHit, VectorStore

__all__ = ["StoredHit", "VectorStore", "make_store"]


def make_store(backend: str, folder: str | Path) -> VectorStore:
    """Open (or prepare to create) the store of one knowledge base."""
    if backend == "lancedb":
        from ragtune.index.stores.lancedb import LanceStore

        return LanceStore(Path(folder) / "lance")
    raise ConfigError(f"store.backend '{backend}': unknown; use lancedb")
