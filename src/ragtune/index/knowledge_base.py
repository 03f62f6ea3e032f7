"""KnowledgeBase: a folder holding your documents' chunks, their vectors and a BM25 index.

    kb = KnowledgeBase("kb")                 # opens or creates
    report = kb.add(["docs/", "paper.pdf"])  # per source: added / updated / unchanged / failed
    hits = kb.search("how do I reset it?", k=5)
    kb.remove("paper.pdf")

Folder layout: ``manifest.json`` (sources, content hashes, embedder), ``lance/`` (the store),
``ingest.journal`` (only while a write is in progress), ``ragtune.toml`` (optional settings).
"""

from __future__ import annotations

import fcntl
import hashlib
import sys
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ragtune.config import Settings, load_settings
from ragtune.errors import ConfigError, InputError, RagtuneError
from ragtune.index.embedders import Embedder, make_embedder
from ragtune.index.ingest import IngestReport, Pending, SourceStatus, chunk_document, commit, prepare_file
from ragtune.index.manifest import Manifest, PgManifest, SourceInfo
from ragtune.index.search import FUSIONS, single
from ragtune.index.stores import VectorStore, is_url, make_store, redact
from ragtune.types import Document, Hit

BATCH_CHUNKS = 512  # chunks per committed batch: bounds the work a crash can lose
QUERY_CACHE = 1024  # recent query vectors kept in memory

__all__ = ["KnowledgeBase", "IngestReport", "SourceInfo", "SourceStatus"]


class KnowledgeBase:
    """Opens (or creates) the knowledge base in ``path``."""

    def __init__(self, path: str | Path, settings: Settings | None = None, embedder: Embedder | None = None):
        url = str(path) if is_url(path) else None  # a postgresql:// URL: the kb lives in that database
        self.path = None if url else Path(path)
        if self.path is not None:
            if self.path.exists() and not self.path.is_dir():
                raise InputError(f"{self.path}: is a file, not a knowledge-base folder; pass a folder with --kb")
            self.path.mkdir(parents=True, exist_ok=True)
        self.settings = settings or load_settings(self.path)
        self.url = url = url or self.settings.store.url  # store.url in ragtune.toml also points a folder at a server
        self.name = redact(url) if url else str(self.path)  # for messages: never a password
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
        if self.manifest.interrupted:
            with self._lock(wait=False) as mine:
                if mine:  # else another process is writing right now: its journal is not a crash
                    self._reconcile()

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
        from ragtune.documents import iter_files

        if isinstance(paths, (str, Path)):
            paths = [paths]
        files = list(iter_files(paths))

        def prepare(item: tuple[Path, str]) -> Pending | SourceStatus:
            return prepare_file(item, self.manifest.sources.get(item[1]), self.chunker, tags)

        return self._ingest(files, lambda item: item[1], prepare, progress)

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
        with self._lock():
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

            self._chunker = Chunker.from_settings(self.settings.chunking)
        return self._chunker

    def _ingest(self, items: list, name_of, prepare, progress: bool | None) -> IngestReport:
        from ragtune.index.progress import IngestProgress

        report = IngestReport()
        order = {name_of(item): i for i, item in enumerate(items)}
        with self._lock(), IngestProgress(len(items), _interactive(progress)) as bar:
            self.manifest.load()  # another process may have written since we opened
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
        commit(self.store, self.manifest, self.embedder, batch, report, bar.embedded)

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

    @contextmanager
    def _lock(self, wait: bool = True) -> Iterator[bool]:
        """One writer per knowledge base at a time (a second `ragtune ingest` waits); yields whether it is held."""
        if self.url:  # a database: its advisory lock
            with self.store.writer(wait) as held:
                yield held
            return
        with open(self.path / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- reading ----------------------------------------------------------------------------
    def search(self, query: str, k: int | None = None, where: dict | None = None,
               mode: str | None = None) -> list[Hit]:
        """The k best chunks for ``query``: hybrid (dense + BM25) by default, filters on source / tags.

        Each hit's metadata has ``dense_score`` (cosine similarity to the query) and
        ``lexical_score`` (BM25, 0 when BM25 did not find it).
        """
        r = self.settings.retrieval
        k = k or r.k
        mode = mode or r.mode
        if mode not in ("hybrid", "dense", "lexical"):
            raise InputError(f"search mode '{mode}': unknown; use hybrid, dense or lexical")
        if not query.strip() or self.store.count() == 0:
            return []
        query_vector = self._query_vector(query)
        n = max(r.candidates, k, 4 * k if r.rerank else 0)
        dense = self.store.dense_search(query_vector, n, where) if mode != "lexical" else []
        lexical = self.store.lexical_search(query, n, where) if mode != "dense" else []
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


def _open_storage(folder: Path | None, url: str | None, settings: Settings) -> tuple[VectorStore, Manifest]:
    """The store and manifest: both in the folder (LanceDB + manifest.json) or both in the database."""
    if url is None:
        return make_store(settings.store.backend, folder, settings.store), Manifest(folder)
    store = make_store("postgres", url, settings.store)
    return store, PgManifest(store)


def _interactive(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress
