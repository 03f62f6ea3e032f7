"""KnowledgeBase: a folder holding your documents' chunks, their vectors and a BM25 index.

    kb = KnowledgeBase("kb")                 # opens or creates
    report = kb.add(["docs/", "paper.pdf"])  # per source: added / updated / unchanged / failed
    hits = kb.search("how do I reset it?", k=5)
    kb.remove("paper.pdf")

Folder layout: ``manifest.json`` (sources, content hashes, embedder), ``lance/`` (the store),
``ingest.journal`` (only while a write is in progress), ``ragtune.toml`` (optional settings).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections import OrderedDict
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Iterable

import numpy as np

from ragtune.config import Settings, load_settings
from ragtune.errors import ConfigError, InputError, RagtuneError, StorageError
from ragtune.index.embedders import Embedder, make_embedder
from ragtune.index.ingest import IngestReport, Pending, SourceStatus, chunk_document, commit, prepare_file
from ragtune.index.manifest import Manifest, PgManifest, SourceInfo
from ragtune.index.search import FUSIONS, OVERFETCH, settled, single
from ragtune.index.stores import VectorStore, is_url, looks_like_conninfo, make_store, redact
from ragtune.index.writes import read_errors, write_errors
from ragtune.types import Document, Hit

BATCH_CHUNKS = 512  # chunks per committed batch: bounds the work a crash can lose
QUERY_CACHE = 1024  # recent query vectors kept in memory
log = logging.getLogger("ragtune")

__all__ = ["KnowledgeBase", "IngestReport", "SourceInfo", "SourceStatus"]


class KnowledgeBase:
    """Opens (or creates) the knowledge base in ``path``."""

    def __init__(self, path: str | Path, settings: Settings | None = None, embedder: Embedder | None = None):
        if looks_like_conninfo(path):  # not a folder to create under that name, password and all
            raise ConfigError(f"--kb {redact(str(path))}: a libpq key/value string; give the database as a URL, "
                              "postgresql://user@host/db (the password in $PGPASSWORD)")
        url = str(path) if is_url(path) else None  # a postgresql:// URL: the kb lives in that database
        self.path = None if url else Path(path)
        if self.path is not None:
            if self.path.exists() and not self.path.is_dir():
                raise InputError(f"{self.path}: is a file, not a knowledge-base folder; pass a folder with --kb")
            self.path.mkdir(parents=True, exist_ok=True)
        self.settings = settings or load_settings(self.path)
        self.url = url = url or self.settings.store.url  # store.url in ragtune.toml also points a folder at a server
        self.name = redact(url) if url else str(self.path)  # for messages: never a password
        self.location: Path | str = self.path if self.path is not None else self.name  # what errors name
        self._embedder = embedder or make_embedder(self.settings.embedder)  # cheap: the model loads lazily
        self._chunker = None
        self._reranker = None
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self.store, self.manifest = _open_storage(self.path, url, self.settings)
        recorded = self.manifest.embedder.get("name")
        if recorded and recorded != self._embedder.name:
            raise ConfigError(
                f"{self.name}: built with embedder '{recorded}' but the settings give '{self._embedder.name}'; "
                "set embedder.model back, or ingest into a new --kb folder")
        if not self.url and not self.manifest.path.exists() and self.store.count():
            try:
                self._rebuild_manifest()
            except StorageError as e:  # a read-only folder: search works, listing waits for a writable one
                log.warning("%s; the manifest could not be rebuilt", e)
        if self.manifest.interrupted:
            self._recover()

    # -- properties -------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def __len__(self) -> int:
        return self.store.count()

    def __repr__(self) -> str:
        return f"KnowledgeBase({self.name!r}, sources={len(self.manifest.sources)})"

    def sources(self) -> list[SourceInfo]:
        """What is in the knowledge base, by source name."""
        self.manifest.load()  # another process may have ingested since we opened
        return sorted(self.manifest.sources.values(), key=lambda s: s.source)

    # -- writing ----------------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path] | str | Path, tags: list[str] | None = None,
            progress: bool | None = None) -> IngestReport:
        """Ingest files and folders; unchanged files cost nothing, a failed file never stops the batch."""
        from ragtune.documents import iter_files, source_name

        if isinstance(paths, (str, Path)):
            paths = [paths]
        given = [Path(p) for p in paths]
        # the knowledge base's own files are never its documents (`ragtune ingest . --kb kb` walks past kb/)
        refused = [SourceStatus(source_name(p), "failed", reason=f"{p}: is inside the knowledge base {self.path} "
                                "itself; ingest your documents from outside it") for p in given if self._owns(p)]
        files = [f for f in iter_files([p for p in given if not self._owns(p)]) if not self._owns(f[0])]

        def prepare(item: tuple[Path, str]) -> Pending | SourceStatus:
            return prepare_file(item, self.manifest.sources.get(item[1]), self.chunker, tags)

        report = self._ingest(files, lambda item: item[1], prepare, progress)
        report.items[:0] = refused
        return report

    def _owns(self, path: Path) -> bool:
        if self.path is None:  # a database kb has no folder of its own
            return False
        here = os.path.realpath(self.path)
        return os.path.commonpath([here, os.path.realpath(path)]) == here

    def add_documents(self, documents: list[Document], tags: list[str] | None = None,
                      progress: bool | None = None) -> IngestReport:
        """Ingest in-memory documents (e.g. dataset records), keyed by ``source`` and a hash of their text."""
        def prepare(doc: Document) -> Pending | SourceStatus:
            sha = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
            known = self.manifest.sources.get(doc.source)
            if known and known.sha256 == sha:
                return SourceStatus(doc.source, "unchanged", known.chunks)
            return self._chunked(doc, sha, tags)

        return self._ingest(documents, lambda doc: doc.source, prepare, progress)

    def remove(self, source: str) -> int:
        """Delete one source's chunks; return how many were removed."""
        with self._lock(), write_errors(self.location):
            self.manifest.load()
            if source not in self.manifest.sources:
                raise InputError(f"source '{source}': not in the knowledge base {self.name}; "
                                 f"list the names with: ragtune sources --kb {self.name}")
            self.manifest.begin([source])
            removed = self.store.delete(source)
            del self.manifest.sources[source]
            self.manifest.save()
            self.manifest.end()
            self.store.optimize()
        return removed

    def _chunked(self, document: Document, sha: str, tags: list[str] | None) -> Pending | SourceStatus:
        return chunk_document(self.chunker, document, sha, tags)

    @property
    def chunker(self):
        if self._chunker is None:
            from ragtune.documents.chunking import Chunker
            from ragtune.documents.tokens import counter_for

            self._chunker = Chunker.from_settings(self.settings.chunking, counter_for(self.embedder))
        return self._chunker

    def _ingest(self, items: list, name_of, prepare, progress: bool | None) -> IngestReport:
        from ragtune.index.progress import IngestProgress

        report = IngestReport()
        order = {name_of(item): i for i, item in enumerate(items)}
        with self._lock(), IngestProgress(len(items), _interactive(progress)) as bar:
            self.manifest.load()  # another process may have written since we opened
            self._forget_lost_sources()
            batch: list[Pending] = []
            for item in items:
                bar.start(name_of(item))
                try:
                    result = prepare(item)
                except RagtuneError as e:
                    result = SourceStatus(name_of(item), "failed", reason=str(e))
                except Exception as e:  # a loader bug on one file must not stop the batch
                    result = SourceStatus(name_of(item), "failed", reason=f"{name_of(item)}: {type(e).__name__}: {e}")
                if isinstance(result, SourceStatus):
                    report.items.append(result)
                else:
                    batch.append(result)
                    if sum(len(p.chunks) for p in batch) >= BATCH_CHUNKS:
                        self._commit(batch, report, bar)
                        batch = []
                bar.advance()
            self._commit(batch, report, bar)
            if report.added or report.updated:
                with write_errors(self.location):
                    self.store.optimize()  # fold new rows into the BM25 index, drop old versions
        report.items.sort(key=lambda s: order.get(s.source, len(order)))
        return report

    def _commit(self, batch: list[Pending], report: IngestReport, bar) -> None:
        if not batch:
            return
        if not self.manifest.embedder:  # recorded at the first real write (asking the dimension loads the model)
            self.manifest.embedder = {"name": self.embedder.name, "dimension": int(self.embedder.dimension)}
            self.manifest.save()
        elif self.manifest.embedder.get("dimension") != self.embedder.dimension:
            raise ConfigError(f"{self.name}: built with {self.manifest.embedder.get('dimension')}-d vectors but "
                              f"embedder '{self.embedder.name}' gives {self.embedder.dimension}-d; "
                              "ingest into a new --kb folder")
        with write_errors(self.location):
            commit(self.store, self.manifest, self.embedder, batch, report, bar.embedded)

    def _recover(self) -> None:
        """A journal left by a crashed write: reconcile now, unless another process is writing right now
        (its journal is not a crash) or the folder cannot be written (then it is read as it is)."""
        try:
            with self._lock(wait=False) as mine, write_errors(self.location):
                if mine:
                    self._reconcile()
        except StorageError as e:
            log.warning("%s; reading the knowledge base as it is", e)

    def _forget_lost_sources(self) -> None:
        """Sources the manifest lists but the store lacks (its folder deleted or damaged) are forgotten,
        so this ingestion adds them again instead of calling them unchanged."""
        with read_errors(self.location):
            stored = self.store.source_versions()
        if any(stored.get((s.source, s.sha256), 0) != s.chunks for s in self.manifest.sources.values()):
            self._reconcile()

    def _rebuild_manifest(self) -> None:
        """manifest.json is gone but the store holds chunks: describe what the store holds again."""
        from ragtune.documents.files import FORMATS
        from ragtune.index.ingest import now

        with self._lock(wait=False) as mine:
            if not mine or self.manifest.path.exists():
                return  # another process is writing: its manifest wins
            first: dict[str, dict] = {}
            for chunk in self.store.chunks():
                first.setdefault(chunk.source, chunk.metadata)
            stamp = now()
            for (source, version), n in sorted(self.store.source_versions().items()):
                meta = first.get(source, {})
                self.manifest.sources[source] = SourceInfo(
                    source, n, version, stamp, stamp, format=FORMATS.get(Path(source).suffix.lower(), ""),
                    title=str(meta.get("title") or ""), tags=list(meta.get("tags") or []))
            self.manifest.embedder = {"dimension": int(self.store.dimension)}  # the name was lost with the file
            self.manifest.save()
        log.warning("%s: manifest.json was missing; rebuilt it from the store (%d sources)", self.path,
                    len(self.manifest.sources))

    def _reconcile(self) -> None:
        """After a crash: delete store rows the manifest does not describe; forget sources the store lost."""
        self.manifest.load()
        stored = self.store.source_versions()
        wanted = {(s.source, s.sha256) for s in self.manifest.sources.values()}
        for source, version in stored:
            if (source, version) not in wanted:
                self.store.delete(source, keep_version=self.manifest.sources[source].sha256
                                  if source in self.manifest.sources else None)
        for info in list(self.manifest.sources.values()):
            if stored.get((info.source, info.sha256), 0) != info.chunks:
                del self.manifest.sources[info.source]  # re-ingesting will add it again
        self.manifest.save()
        self.manifest.end()

    def _lock(self, wait: bool = True) -> AbstractContextManager[bool]:
        """One writer per knowledge base at a time (a second `ragtune ingest` says whom it waits for)."""
        if self.url:  # a database: its advisory lock (PgStore's own, beyond the protocol)
            return self.store.writer(wait)  # type: ignore[attr-defined]
        from ragtune.index.writes import writer_lock

        assert self.path is not None  # a folder kb: its lock file
        return writer_lock(self.path, wait)

    # -- reading ----------------------------------------------------------------------------
    def search(self, query: str, k: int | None = None, where: dict | None = None,
               mode: str | None = None) -> list[Hit]:
        """The k best chunks for ``query``: hybrid (dense + BM25) by default, filters on source / tags.

        Each hit's metadata has ``dense_score`` (cosine similarity to the query) and
        ``lexical_score`` (BM25, 0 when BM25 did not find it).
        """
        r = self.settings.retrieval
        if k is not None and k < 1:  # 0 must not quietly mean the default, nor -1 "no matches"
            raise ConfigError(f"setting 'retrieval.k' = {k}: the number of passages must be at least 1 (-k/--k)")
        k = k or r.k
        mode = mode or r.mode
        if mode not in ("hybrid", "dense", "lexical"):
            raise InputError(f"search mode '{mode}': unknown; use hybrid, dense or lexical")
        if not query.strip():
            return []
        with read_errors(self.location):
            empty = self.store.count() == 0
        if empty:
            self._check_store_not_lost()
            return []
        query_vector = self._query_vector(query)
        n = max(r.candidates, k, 4 * k if r.rerank else 0)
        with read_errors(self.location):  # not around the embedder: its errors are its own
            dense = settled(self.store.dense_search(query_vector, OVERFETCH * n, where), n) if mode != "lexical" else []
            lexical = settled(self.store.lexical_search(query, OVERFETCH * n, where), n) if mode != "dense" else []
        if mode == "hybrid":
            ranked = FUSIONS[r.fusion](dense, lexical, query_vector, r.dense_weight)
        else:
            ranked = single(dense or lexical, query_vector, lexical=mode == "lexical")
        if r.rerank:
            ranked = self.reranker.rerank(query, ranked[:n])
        return [Hit(text=s.hit.text, source=s.hit.source, score=s.score, id=s.hit.id,
                    metadata={**s.hit.metadata, "position": s.hit.position,
                              "dense_score": s.dense, "lexical_score": s.lexical})
                for s in ranked[:k]]

    def _check_store_not_lost(self) -> None:
        """An empty store under a manifest that lists sources: never answer "no matches" for a lost store."""
        self.manifest.load()
        if self.manifest.sources:
            raise ConfigError(f"{self.name}: the manifest lists {len(self.manifest.sources)} sources but the store "
                              "holds no chunks (its folder was deleted or damaged); re-run `ragtune ingest` with "
                              f"the same files and --kb {self.name} to rebuild it")

    def _query_vector(self, query: str) -> np.ndarray:
        """The query's vector; recent queries are remembered (a server sees the same ones again)."""
        vector = self._queries.pop(query, None)
        if vector is None:
            vector = self.embedder([query])[0]
        self._queries[query] = vector
        if len(self._queries) > QUERY_CACHE:
            self._queries.popitem(last=False)
        return vector

    @property
    def reranker(self):
        if self._reranker is None:
            from ragtune.index.rerank import Reranker

            self._reranker = Reranker.from_settings(self.settings.retrieval)
        return self._reranker


def _open_storage(folder: Path | None, url: str | None, settings: Settings
                  ) -> tuple[VectorStore, Manifest | PgManifest]:
    """The store and manifest: both in the folder (LanceDB + manifest.json) or both in the database."""
    if url is None:
        assert folder is not None
        with read_errors(folder):
            return make_store(settings.store.backend, folder, settings.store), Manifest(folder)
    store = make_store("postgres", url, settings.store)
    return store, PgManifest(store)


def _interactive(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress
