"""The embedded default store: LanceDB tables in ``<kb>/lance/``.

- ``chunks``: one row per chunk (id, source, version, position, text, text_hash, tags,
  metadata as JSON, vector) with LanceDB's native BM25 full-text index on ``text``
  (English stemming and stop words). No ANN index: exhaustive cosine search is exact and
  takes milliseconds at knowledge-base sizes (100k × 384-d measured at a few ms here).
- ``embeddings``: text_hash → vector, the persistent embedding cache (survives removals,
  so re-adding a file never re-embeds it).

Every LanceDB write is an atomic commit of a new table version, and every write here is an
idempotent merge keyed by id or text hash, so a batch replayed after a crash adds nothing twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.index.stores.base import StoredHit, check_filter
from ragtune.types import Chunk

os.environ.setdefault("LANCEDB_LOG", "error")  # keep LanceDB's Rust warnings off the user's terminal

import lancedb  # noqa: E402
import pyarrow as pa  # noqa: E402
from lancedb.index import FTS  # noqa: E402
from lancedb.query import MatchQuery  # noqa: E402

# Old table versions are dropped this long after they stop being current: long enough for a
# concurrent reader (the server) to finish a query, short enough that ingestions do not pile up.
KEEP_OLD_VERSIONS = timedelta(minutes=5)
HASH_BATCH = 512  # text hashes per IN (...) lookup
HIT_COLUMNS = ["id", "source", "text", "position", "metadata"]


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _where_sql(where: dict | None) -> str | None:
    parts = []
    for key, values in check_filter(where).items():
        listed = ", ".join(_quote(v) for v in values)
        parts.append(f"source IN ({listed})" if key == "source" else f"array_has_any(tags, [{listed}])")
    return " AND ".join(parts) or None


class LanceStore:
    """Chunks, vectors and the embedding cache of one knowledge base."""

    def __init__(self, folder: str | Path, dimension: int | None = None):
        self.folder = Path(folder)
        # Interval 0: every read sees the latest commit, also one made by another process
        # (a server keeps answering while `ragtune ingest` adds files).
        self.db = lancedb.connect(str(self.folder), read_consistency_interval=timedelta(0))
        names = set(self.db.list_tables().tables)
        self._chunks = self.db.open_table("chunks") if "chunks" in names else None
        self._cache = self.db.open_table("embeddings") if "embeddings" in names else None
        self.dimension = dimension or (self._chunks.schema.field("vector").type.list_size if self._chunks else 0)

    # -- schema -----------------------------------------------------------------------------
    def _create(self, dimension: int) -> None:
        vector = pa.list_(pa.float32(), dimension)
        chunks = pa.schema([("id", pa.string()), ("source", pa.string()), ("version", pa.string()),
                            ("position", pa.int32()), ("text", pa.string()), ("text_hash", pa.string()),
                            ("tags", pa.list_(pa.string())), ("metadata", pa.string()), ("vector", vector)])
        cache = pa.schema([("text_hash", pa.string()), ("vector", vector)])
        # exist_ok: a crash between the two creations leaves one table; the next open completes it
        self._chunks = self.db.create_table("chunks", schema=chunks, exist_ok=True)
        self._cache = self.db.create_table("embeddings", schema=cache, exist_ok=True)
        self.dimension = dimension

    def _ensure(self, dimension: int) -> tuple[Any, Any]:
        """The chunks and embeddings tables, created on the first write."""
        if self._chunks is None or self._cache is None:
            self._create(dimension)
        assert self._chunks is not None and self._cache is not None
        return self._chunks, self._cache

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray, versions: Sequence[str]) -> None:
        if not chunks:
            return
        table, _ = self._ensure(vectors.shape[1])
        rows = pa.table({
            "id": [c.id for c in chunks],
            "source": [c.source for c in chunks],
            "version": list(versions),
            "position": pa.array([c.position for c in chunks], pa.int32()),
            "text": [c.text for c in chunks],
            "text_hash": [c.metadata.get("text_hash", "") for c in chunks],
            "tags": [list(c.metadata.get("tags") or []) for c in chunks],
            "metadata": [json.dumps(c.metadata, default=str) for c in chunks],
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()),
                                                        vectors.shape[1]),
        }, schema=table.schema)
        table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)
        if not any(i.index_type == "FTS" for i in table.list_indices()):
            table.create_index("text", config=FTS(language="English", stem=True, remove_stop_words=True))

    def delete(self, source: str, keep_version: str | None = None) -> int:
        if self._chunks is None:
            return 0
        where = f"source = {_quote(source)}"
        if keep_version is not None:
            where += f" AND version != {_quote(keep_version)}"
        n = self._chunks.count_rows(where)
        if n:
            self._chunks.delete(where)
        return n

    def cache_vectors(self, text_hashes: Sequence[str], vectors: np.ndarray) -> None:
        if not len(text_hashes):
            return
        _, cache = self._ensure(vectors.shape[1])
        rows = pa.table({"text_hash": list(text_hashes),
                         "vector": pa.FixedSizeListArray.from_arrays(
                             pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1])},
                        schema=cache.schema)
        cache.merge_insert("text_hash").when_not_matched_insert_all().execute(rows)

    def optimize(self) -> None:
        for table in (self._chunks, self._cache):
            if table is not None and table.count_rows():
                table.optimize(cleanup_older_than=KEEP_OLD_VERSIONS)

    # -- reads ------------------------------------------------------------------------------
    def cached_vectors(self, text_hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        if self._cache is None:
            return found
        unique = list(dict.fromkeys(text_hashes))
        for start in range(0, len(unique), HASH_BATCH):
            batch = unique[start:start + HASH_BATCH]
            where = f"text_hash IN ({', '.join(_quote(h) for h in batch)})"
            table = self._cache.search().where(where).select(["text_hash", "vector"]).limit(None).to_arrow()
            if table.num_rows:
                matrix = table["vector"].combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
                found.update(zip(table["text_hash"].to_pylist(), matrix))
        return found

    def dense_search(self, vector: np.ndarray, k: int, where: dict | None = None) -> list[StoredHit]:
        if self._chunks is None:
            return []
        query: Any = self._chunks.search(np.asarray(vector, np.float32), vector_column_name="vector")
        query = query.distance_type("cosine").select(HIT_COLUMNS).limit(k)
        sql = _where_sql(where)
        if sql:
            query = query.where(sql, prefilter=True)
        table = query.to_arrow()
        return [self._hit(row, 1.0 - row["_distance"]) for row in table.to_pylist()]

    def lexical_search(self, query: str, k: int, where: dict | None = None) -> list[StoredHit]:
        if self._chunks is None or not query.strip():
            return []
        # A MatchQuery takes the words as plain words: a bare string would be parsed as query syntax
        # (quotes become a phrase query, which needs positions this index does not keep).
        match = MatchQuery(query, "text")  # type: ignore[call-arg]  # mypy misses its pydantic defaults
        search = self._chunks.search(match, query_type="fts")
        search = search.select(HIT_COLUMNS + ["vector", "_score"]).limit(k)
        sql = _where_sql(where)
        if sql:
            search = search.where(sql, prefilter=True)
        return [self._hit(row, row["_score"]) for row in search.to_arrow().to_pylist()]

    def source_versions(self) -> dict[tuple[str, str], int]:
        if self._chunks is None:
            return {}
        table = self._chunks.search().select(["source", "version"]).limit(None).to_arrow()
        counts = table.group_by(["source", "version"]).aggregate([("source", "count")])
        return {(s, v): n for s, v, n in zip(counts["source"].to_pylist(), counts["version"].to_pylist(),
                                            counts["source_count"].to_pylist())}

    def chunks(self) -> list[Chunk]:
        """Every stored chunk, by source and position (for synthesising QA pairs, exports)."""
        if self._chunks is None:
            return []
        rows = self._chunks.search().select(HIT_COLUMNS).limit(None).to_arrow().to_pylist()
        out = [Chunk(r["id"], r["source"], r["text"], r["position"], json.loads(r["metadata"] or "{}")) for r in rows]
        return sorted(out, key=lambda c: (c.source, c.position))

    def ids(self) -> list[str]:
        """Every stored chunk id (for consistency checks)."""
        if self._chunks is None:
            return []
        return self._chunks.search().select(["id"]).limit(None).to_arrow()["id"].to_pylist()

    def count(self) -> int:
        return self._chunks.count_rows() if self._chunks is not None else 0

    @staticmethod
    def _hit(row: dict, score: float) -> StoredHit:
        vector = row.get("vector")
        return StoredHit(id=row["id"], source=row["source"], text=row["text"], position=row["position"],
                         score=float(score), metadata=json.loads(row["metadata"] or "{}"),
                         vector=None if vector is None else np.asarray(vector, np.float32))
