"""Vector stores, picked by name (``settings.store.backend``): a folder is LanceDB, a postgresql:// URL PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from ragtune.config import StoreSettings
from ragtune.errors import ConfigError
from ragtune.index.stores.base import StoredHit, VectorStore

__all__ = ["StoredHit", "VectorStore", "make_store", "is_url", "redact"]


def is_url(location) -> bool:
    """Whether a --kb value (or store.url) names a PostgreSQL database rather than a folder."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for messages and logs."""
    import re

    url = re.sub(r"(://[^:/@?]*):[^@/?]*@", r"\1:***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)


def make_store(backend: str, location: str | Path, settings: StoreSettings | None = None) -> VectorStore:
    """Open (or prepare to create) the store of one knowledge base: a kb folder, or a database URL."""
    if backend == "lancedb":
        from ragtune.index.stores.lancedb import LanceStore

        return LanceStore(Path(location) / "lance")
    if backend == "postgres":
        if not is_url(str(location)):
            raise ConfigError("store.backend 'postgres': needs store.url = 'postgresql://user@host/db' "
                              "(or --kb postgresql://...)")
        from ragtune.index.stores.postgres import PgStore

        return PgStore(str(location), settings)
    raise ConfigError(f"store.backend '{backend}': unknown; use lancedb or postgres")
