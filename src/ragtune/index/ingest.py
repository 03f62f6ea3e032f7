"""Incremental, crash-safe ingestion: documents → chunks → vectors (cached by text hash) → store.

Sources are committed in batches. For each batch, in this order:
1. vectors are looked up in the store's embedding cache by text hash; only missing texts are
   embedded, and they are cached as soon as they are computed (a killed run keeps them);
2. the journal marks the batch in progress;
3. chunks are upserted by id (idempotent), then each source's chunks of an older version are deleted;
4. the manifest (source → sha256, chunk count) is replaced atomically and the journal cleared.
A run killed anywhere leaves either the old or the new manifest; on the next open, store rows
that the manifest does not describe are deleted (see KnowledgeBase._reconcile), and re-running
the ingestion redoes only what is missing, without duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ragtune.index.manifest import Manifest, PgManifest, SourceInfo
from ragtune.types import Chunk, Document

EMBED_BATCH = 256  # texts per embedder call: each call's vectors are cached before the next starts


@dataclass
class SourceStatus:
    """What happened to one source: added, updated, unchanged or failed (with the reason)."""

    source: str
    status: str
    chunks: int = 0
    reason: str = ""


@dataclass
class IngestReport:
    """Per-source outcome of one ``add``; ``embedded`` counts texts actually sent to the embedder."""

    items: list[SourceStatus] = field(default_factory=list)
    embedded: int = 0

    def of(self, status: str) -> list[SourceStatus]:
        return [i for i in self.items if i.status == status]

    @property
    def added(self) -> list[SourceStatus]:
        return self.of("added")

    @property
    def updated(self) -> list[SourceStatus]:
        return self.of("updated")

    @property
    def unchanged(self) -> list[SourceStatus]:
        return self.of("unchanged")

    @property
    def failed(self) -> list[SourceStatus]:
        return self.of("failed")

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> list[dict]:
        return [{"source": i.source, "status": i.status, "chunks": i.chunks, "reason": i.reason}
                for i in self.items]

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class Pending:
    """A loaded and chunked source waiting for its batch to be committed."""

    document: Document
    sha256: str
    chunks: list[Chunk]


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def vectors_for(store, embedder, texts: Sequence[str], hashes: Sequence[str],
                on_embedded: Callable[[int], None] = lambda n: None) -> tuple[np.ndarray, int]:
    """Vectors for ``texts``: from the cache when known, else embedded (each distinct text once) and cached."""
    known = store.cached_vectors(hashes)
    missing = list(dict.fromkeys(h for h in hashes if h not in known))
    text_of = dict(zip(hashes, texts))
    for start in range(0, len(missing), EMBED_BATCH):
        batch = missing[start:start + EMBED_BATCH]
        vectors = np.asarray(embedder([text_of[h] for h in batch]), dtype=np.float32)
        store.cache_vectors(batch, vectors)
        known.update(zip(batch, vectors))
        on_embedded(len(batch))
    if not hashes:
        return np.zeros((0, store.dimension or 0), np.float32), 0
    return np.stack([known[h] for h in hashes]), len(missing)


def commit(store, manifest: Manifest | PgManifest, embedder, batch: list[Pending], report: IngestReport,
           on_embedded: Callable[[int], None] = lambda n: None) -> None:
    """Store one batch of sources (steps 1–4 of the module docstring) and record their status."""
    if not batch:
        return
    chunks = list({c.id: c for p in batch for c in p.chunks}.values())  # ids are unique per batch
    hashes = [text_hash(c.text) for c in chunks]
    for c, h in zip(chunks, hashes):
        c.metadata["text_hash"] = h
    vectors, embedded = vectors_for(store, embedder, [c.text for c in chunks], hashes, on_embedded)
    report.embedded += embedded
    version = {p.document.source: p.sha256 for p in batch}
    manifest.begin(list(version))
    store.upsert(chunks, vectors, [version[c.source] for c in chunks])
    for source, sha in version.items():
        store.delete(source, keep_version=sha)
    stamp = now()
    for p in batch:
        doc, old = p.document, manifest.sources.get(p.document.source)
        manifest.sources[doc.source] = SourceInfo(
            source=doc.source, chunks=len({c.id for c in p.chunks}), sha256=p.sha256,
            added_at=old.added_at if old else stamp, updated_at=stamp,
            path=str(doc.metadata.get("path", "")), format=str(doc.metadata.get("format", "")),
            title=str(doc.metadata.get("title") or ""), tags=list(doc.metadata.get("tags") or []))
        report.items.append(SourceStatus(doc.source, "updated" if old else "added", len(p.chunks)))
    manifest.save()
    manifest.end()


def file_sha256(path: Path) -> str | None:
    from ragtune.documents.files import read_bytes
    from ragtune.errors import InputError

    try:  # the same guarded read as loading: never a FIFO or a device, never more than the size limit
        return hashlib.sha256(read_bytes(path)).hexdigest()
    except InputError:
        return None


def prepare_file(item: tuple[Path, str], known: SourceInfo | None, chunker, tags: list[str] | None
                 ) -> Pending | SourceStatus:
    """Load and chunk one file, unless its content hash is the one already stored (then it is not even read)."""
    from ragtune.documents import load

    path, source = item
    if known and file_sha256(path) == known.sha256:
        return SourceStatus(source, "unchanged", known.chunks)  # no loading, no embedding
    document = load(path, source)
    return chunk_document(chunker, document, document.metadata.get("sha256") or file_sha256(path) or "", tags)


def chunk_document(chunker, document: Document, sha: str, tags: list[str] | None) -> Pending | SourceStatus:
    """A loaded document's chunks (with the extra tags), or a failure when it has no text."""
    if tags:
        document.metadata["tags"] = sorted(set(document.metadata.get("tags") or []) | set(tags))
    chunks = chunker(document)
    if not chunks:
        return SourceStatus(document.source, "failed", reason=f"{document.source}: no text to index; "
                            "check that the file has readable text")
    return Pending(document, sha, chunks)
