"""Vector stores, picked by name (``settings.store.backend``): a folder is LanceDB, a postgresql:// URL PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from ragtune.config import StoreSettings
from ragtune.errors import ConfigError
from ragtune.index.stores.base import StoredHit, VectorStore

__all__ = ["StoredHit", "VectorStore", "make_store", "is_url", "looks_like_conninfo", "redact"]


def is_url(location) -> bool:
    """Whether a --kb value (or store.url) names a PostgreSQL database rather than a folder."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL (or libpq ``key=value`` string, or a message quoting one) with any password replaced by ***."""
    import re

    url = re.sub(r"(://[^:/@?\s]*):[^@/?\s]*@", r"\1:***@", url)
    # password=s3cret, password = 's3 cret' (libpq quoting, \' inside), ?password=s3cret&...
    return re.sub(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&\s]*)", r"\1***", url)


def looks_like_conninfo(location) -> bool:
    """Whether a --kb value is a libpq ``key=value`` connection string (``host=db dbname=kb ...``)."""
    import re

    return isinstance(location, str) and bool(
        re.match(r"\s*(host|hostaddr|port|dbname|user|password|service|sslmode)\s*=", location, re.I))


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
