"""The server store: PostgreSQL + pgvector, for teams (several servers and writers, one knowledge base).

Tables, in the connection's schema (``?options=-csearch_path%3Dteam_a`` keeps several knowledge bases
in one database):
- ``ragtune_chunks``: id, source, version, position, text, text_hash, tags, metadata (jsonb) and
  ``vector vector(d)`` with an HNSW index (cosine); ``tsv`` (English stemming and stop words) with a
  GIN index and ``doc_len`` (tokens) are generated from the text, for BM25 computed in SQL.
- ``ragtune_embeddings``: text_hash → vector, the embedding cache.
- ``ragtune_meta`` and ``ragtune_sources``: the manifest (``PgManifest``), in the same database.

A batch's upserts, deletes and manifest update are one transaction (opened by the manifest's
``begin``, committed by its ``end``), so crash consistency is PostgreSQL's own. Writers hold a
session advisory lock (a second ingestion waits; a dead writer's lock goes with its connection);
readers use their own connection and never wait.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from ragtune.config import StoreSettings
from ragtune.errors import ConfigError, StorageError
from ragtune.index.stores import redact
from ragtune.index.stores.base import StoredHit, check_filter
from ragtune.index.stores.pg_sql import (
    BM25_SQL,
    DELETE_POSTINGS_SQL,
    DENSE_SQL,
    LIVE_STATS,
    MANIFEST_DDL,
    POSTINGS_SQL,
    RECORD_STATS,
    RECORDED_STATS,
    STORE_DDL,
    TS_RANK_SQL,
    UPSERT_SQL,
)
from ragtune.types import Chunk

LOCK_KEY = "hashtext('ragtune:' || current_schema())"  # one writer per knowledge base (= schema)


def _connect(url: str, password_env: str):
    try:
        import psycopg
        from pgvector.psycopg import register_vector
    except ImportError:
        raise ConfigError(f"{redact(url)}: the PostgreSQL store needs its client libraries; "
                          "pip install 'ragtune[postgres]'") from None
    password = os.environ.get(password_env)
    try:
        extra: dict[str, Any] = {"password": password} if password else {}
        conn = psycopg.connect(url, autocommit=True, **extra)
    except psycopg.Error as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if password:
            message = message.replace(password, "***")
        raise ConfigError(f"{redact(url)}: cannot connect to PostgreSQL ({redact(message)}); check that the "
                          f"server runs and the URL (a password goes in ${password_env})") from None
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('ragtune:extension'))")
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as e:
            raise ConfigError(f"{redact(url)}: pgvector is not available ({str(e).strip().splitlines()[0]}); "
                              "install pgvector 0.7+ on the server, or ask its admin to CREATE EXTENSION vector") from None
    register_vector(conn)
    try:  # pgvector >= 0.8: a filtered HNSW scan continues until it has k rows
        conn.execute("SET hnsw.iterative_scan = strict_order")
    except psycopg.Error:
        pass
    return conn


def _array(vector) -> np.ndarray:
    """A pgvector value (``Vector`` or array) as float32 numpy."""
    return np.asarray(vector.to_numpy() if hasattr(vector, "to_numpy") else vector, np.float32)


def _where(where: dict | None) -> tuple[str, dict]:
    """SQL conditions (applied before ranking) and their parameters for a filter dict."""
    parts, params = [], {}
    for key, values in check_filter(where).items():
        params[f"f_{key}"] = values
        parts.append("c.source = ANY(%(f_source)s)" if key == "source" else "c.tags && %(f_tags)s::text[]")
    return "".join(f" AND {p}" for p in parts), params


class PgStore:
    """Chunks, vectors, the embedding cache and the manifest of one knowledge base in PostgreSQL."""

    def __init__(self, url: str, settings: StoreSettings | None = None):
        self.settings = settings or StoreSettings(backend="postgres", url=url)
        self.url, self.name = url, redact(url)
        self._read = _connect(url, self.settings.password_env)
        self._conn_write = None
        self._tx = None  # the open batch transaction, if any
        self._ef = 0
        self.dimension = self._stored_dimension()
        self._visible = bool(self.dimension)

    # -- connections and transactions -------------------------------------------------------
    def _rows(self, sql: str, params=None, ef_search: int | None = None) -> list[tuple]:
        """Run a read on the reader connection; once reconnect if the server dropped it (restart, failover)."""
        import psycopg

        for attempt in (0, 1):
            try:
                if ef_search is not None and ef_search != self._ef:
                    self._read.execute(f"SET hnsw.ef_search = {int(ef_search)}")
                    self._ef = ef_search
                return self._read.execute(sql, params).fetchall()
            except psycopg.OperationalError as e:
                if not (self._read.broken or self._read.closed):
                    raise
                if attempt:
                    raise ConfigError(f"{self.name}: lost the connection to PostgreSQL ({str(e).strip()[:200]}); "
                                      "check that the server is up") from None
                self._read, self._ef = _connect(self.url, self.settings.password_env), 0
        return []

    @property
    def _write(self):
        if self._conn_write is None:
            self._conn_write = _connect(self.url, self.settings.password_env)
        return self._conn_write

    def begin(self) -> None:
        """Open the batch transaction: every write until ``commit`` lands together or not at all."""
        if self._tx is None:
            tx = self._write.transaction()
            tx.__enter__()
            self._tx = tx

    def commit(self) -> None:
        if self._tx is not None:
            tx, self._tx = self._tx, None
            tx.__exit__(None, None, None)

    def rollback(self) -> None:
        if self._tx is not None:
            tx, self._tx = self._tx, None
            try:
                tx.__exit__(RuntimeError, RuntimeError("rolled back"), None)
            except RuntimeError:
                pass

    @contextmanager
    def writer(self, wait: bool = True) -> Iterator[bool]:
        """One writer per knowledge base: a session advisory lock; an unfinished batch is rolled back."""
        import psycopg

        held = False
        try:
            held = bool(self._write.execute(f"SELECT pg_try_advisory_lock({LOCK_KEY})").fetchone()[0])
            if not held and wait:
                print(f"{self.name}: another process is writing to this knowledge base; waiting for it to finish",
                      file=sys.stderr, flush=True)
                self._write.execute(f"SELECT pg_advisory_lock({LOCK_KEY})")
                held = True
            yield held
        except psycopg.OperationalError as e:  # the server stopped or the network dropped mid-write
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise StorageError(f"{self.name}: lost the connection to PostgreSQL during a write ({redact(first)}); "
                               "check that the server is up and re-run (the unfinished batch was rolled back, "
                               "what was stored before is kept)") from e
        finally:
            conn = self._conn_write
            if conn is None or conn.broken or conn.closed:  # the server rolled back and unlocked with the session
                self._tx, self._conn_write = None, None
            else:
                self.rollback()  # nothing open after a clean run; after an error, the batch is undone
                if held:
                    self._write.execute(f"SELECT pg_advisory_unlock({LOCK_KEY})")

    def close(self) -> None:
        for conn in (self._read, self._conn_write):
            if conn is not None:
                conn.close()

    # -- schema -----------------------------------------------------------------------------
    def _exists(self, table: str) -> bool:
        return self._rows("SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0]

    def _stored_dimension(self) -> int:
        if not self._exists("ragtune_chunks"):
            return 0
        return int(self._rows("SELECT atttypmod FROM pg_attribute WHERE attrelid = 'ragtune_chunks'::regclass"
                              " AND attname = 'vector'")[0][0])

    def _ensure(self, dimension: int | None) -> None:
        """Create the tables on the first write (under a lock: two first writers must not race)."""
        done = self.dimension if dimension else self._exists("ragtune_sources")
        if done:
            return
        with self._write.transaction():
            self._write.execute("SELECT pg_advisory_xact_lock(hashtext('ragtune:schema:' || current_schema()))")
            self._write.execute(MANIFEST_DDL)
            if dimension:
                self._write.execute(STORE_DDL.format(d=int(dimension)))
        if dimension:  # (inside a batch the reader cannot see the new table before the commit)
            self.dimension = self._stored_dimension() or int(dimension)

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray, versions: Sequence[str]) -> None:
        if not chunks:
            return
        self._ensure(vectors.shape[1])
        rows = [(c.id, c.source, v, c.position, c.text, c.metadata.get("text_hash", ""),
                 list(c.metadata.get("tags") or []), json.dumps(c.metadata, default=str), np.asarray(vec, np.float32))
                for c, v, vec in zip(chunks, versions, vectors)]
        with self._write.transaction(), self._write.cursor() as cur:
            cur.executemany(UPSERT_SQL, rows)
            ids = {"ids": [c.id for c in chunks]}
            cur.execute(DELETE_POSTINGS_SQL, ids)
            cur.execute(POSTINGS_SQL, ids)

    def delete(self, source: str, keep_version: str | None = None) -> int:
        if not self.dimension and not self._exists("ragtune_chunks"):
            return 0
        sql, params = "DELETE FROM ragtune_chunks WHERE source = %s", [source]
        if keep_version is not None:
            sql, params = sql + " AND version <> %s", params + [keep_version]
        return self._write.execute(sql, params).rowcount

    def cache_vectors(self, text_hashes: Sequence[str], vectors: np.ndarray) -> None:
        if not len(text_hashes):
            return
        self._ensure(vectors.shape[1])
        rows = [(h, np.asarray(v, np.float32)) for h, v in zip(text_hashes, vectors)]
        with self._write.transaction(), self._write.cursor() as cur:
            cur.executemany("INSERT INTO ragtune_embeddings (text_hash, vector) VALUES (%s, %s) "
                            "ON CONFLICT (text_hash) DO NOTHING", rows)

    def optimize(self) -> None:
        """Refresh the planner's and BM25's statistics after an ingestion (the indexes are always current)."""
        if self.dimension:
            self._write.execute("VACUUM (ANALYZE) ragtune_chunks, ragtune_postings")  # index-only postings scans
            self._write.execute(RECORD_STATS)  # BM25's corpus statistics, read by unfiltered queries

    # -- reads ------------------------------------------------------------------------------
    def _ready(self) -> bool:
        """Whether the reader sees the tables (created since we opened, by us or another process, and committed)."""
        if not self._visible:
            found = self._stored_dimension()
            self._visible, self.dimension = bool(found), found or self.dimension
        return self._visible

    def cached_vectors(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        if not self._ready() or not len(text_hashes):
            return {}
        rows = self._rows("SELECT text_hash, vector FROM ragtune_embeddings WHERE text_hash = ANY(%s)",
                          (list(dict.fromkeys(text_hashes)),))
        return {h: _array(v) for h, v in rows}

    def dense_search(self, vector: np.ndarray, k: int, where: dict | None = None) -> list[StoredHit]:
        if not self._ready():
            return []
        filters, params = _where(where)
        ef = max(self.settings.ef_search, k)  # the HNSW candidate list must be at least k long
        params |= {"v": np.asarray(vector, np.float32), "k": k}
        rows = self._rows(DENSE_SQL.format(filters=filters), params, ef_search=ef)
        return [self._hit(row) for row in rows]

    def lexical_search(self, query: str, k: int, where: dict | None = None) -> list[StoredHit]:
        filters, params = _where(where)  # validates the filter even when nothing is stored
        if not query.strip() or not self._ready():
            return []
        if self.settings.lexical_scoring == "bm25":
            stats = LIVE_STATS.format(filters=filters) if filters else RECORDED_STATS
            join = "JOIN ragtune_chunks c ON c.id = p.id" if filters else ""
            sql = BM25_SQL.format(filters=filters, stats=stats, join=join)
        else:
            sql = TS_RANK_SQL.format(filters=filters)
        rows = self._rows(sql, params | {"q": query, "k": k})
        return [self._hit(row) for row in rows]

    def source_versions(self) -> dict[tuple[str, str], int]:
        if not self._ready():
            return {}
        rows = self._rows("SELECT source, version, count(*) FROM ragtune_chunks GROUP BY 1, 2")
        return {(s, v): n for s, v, n in rows}

    def chunks(self) -> list[Chunk]:
        if not self._ready():
            return []
        rows = self._rows("SELECT id, source, text, position, metadata FROM ragtune_chunks ORDER BY source, position, id")
        return [Chunk(i, s, t, p, m or {}) for i, s, t, p, m in rows]

    def count(self) -> int:
        return self._rows("SELECT count(*) FROM ragtune_chunks")[0][0] if self._ready() else 0

    @staticmethod
    def _hit(row: tuple) -> StoredHit:
        hit_id, source, text, position, metadata, vector, score = row
        return StoredHit(id=hit_id, source=source, text=text, position=position, score=float(score),
                         metadata=metadata or {}, vector=None if vector is None else _array(vector))

    # -- the manifest's rows (PgManifest) ---------------------------------------------------
    def read_manifest(self) -> tuple[dict, dict[str, dict]]:
        if not self._exists("ragtune_sources"):
            return {}, {}
        conn = self._write if self._tx is not None else self._read  # inside a batch: see its own writes
        row = conn.execute("SELECT value FROM ragtune_meta WHERE key = 'embedder'").fetchone()
        sources = dict(conn.execute("SELECT source, info FROM ragtune_sources").fetchall())
        return (row[0] if row else {}), sources

    def write_manifest(self, embedder: dict, changed: dict[str, dict], removed: Sequence[str]) -> None:
        """Record the manifest's changes (inside the open batch transaction, when there is one)."""
        self._ensure(None)
        with self._write.transaction(), self._write.cursor() as cur:
            cur.execute("INSERT INTO ragtune_meta (key, value) VALUES ('embedder', %s::jsonb) "
                        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (json.dumps(embedder),))
            if changed:
                cur.executemany("INSERT INTO ragtune_sources (source, info) VALUES (%s, %s::jsonb) ON CONFLICT "
                                "(source) DO UPDATE SET info = EXCLUDED.info",
                                [(s, json.dumps(info)) for s, info in changed.items()])
            if removed:
                cur.execute("DELETE FROM ragtune_sources WHERE source = ANY(%s)", (list(removed),))


__all__ = ["PgStore"]
