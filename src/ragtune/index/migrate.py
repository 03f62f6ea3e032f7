"""Copy a knowledge base to another store (an embedded folder to PostgreSQL), vectors included, and verify.

Sources are copied in batches, each committed like an ingestion batch (chunks upserted by id,
then the manifest), so an interrupted copy can simply be run again. Vectors come from the source's
embedding cache (nothing is re-embedded unless the cache lacks a text). The copy is verified
by chunk counts, chunk ids and each source's version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ragtune.config import load_settings
from ragtune.errors import ConfigError, InputError
from ragtune.index.ingest import text_hash, vectors_for
from ragtune.index.knowledge_base import BATCH_CHUNKS, KnowledgeBase
from ragtune.index.stores import is_url


@dataclass
class MigrateReport:
    source: str
    target: str
    sources: int  # sources copied
    chunks: int  # chunks copied
    embedded: int  # texts missing from the source's cache, embedded now
    kept: int = 0  # sources the target already held besides the copied ones (merged: they stay)
    replaced: int = 0  # sources of the same name the target held, replaced by the copy
    target_chunks: int = 0  # chunks in the target after the copy

    def to_json(self) -> dict:
        return self.__dict__.copy()


def migrate(source: str | Path, target: str | Path) -> MigrateReport:
    """Copy the knowledge base at ``source`` into ``target`` (a postgresql:// URL or a folder)."""
    src = KnowledgeBase(source, settings=load_settings(None if is_url(source) else source))
    if not src.manifest.embedder:
        raise InputError(f"{src.name}: no knowledge base to migrate; ingest into it first")
    settings = src.settings.model_copy(deep=True)
    settings.store.url = None
    dst = KnowledgeBase(target, settings=settings, embedder=src.embedder)
    if dst.manifest.embedder and dst.manifest.embedder != src.manifest.embedder:
        raise ConfigError(f"{dst.name}: holds a knowledge base built with {dst.manifest.embedder}; "
                          "migrate into an empty database or folder")
    by_source: dict[str, list] = {}
    for chunk in src.store.chunks():
        by_source.setdefault(chunk.source, []).append(chunk)
    embedded = 0
    with dst._lock():
        dst.manifest.load()
        held = set(dst.manifest.sources)
        dst.manifest.embedder = dict(src.manifest.embedder)
        batch: list[str] = []
        for name in sorted(src.manifest.sources):
            batch.append(name)
            if sum(len(by_source.get(s, [])) for s in batch) >= BATCH_CHUNKS:
                embedded += _copy(src, dst, batch, by_source)
                batch = []
        embedded += _copy(src, dst, batch, by_source)
        dst.store.optimize()
    _verify(src, dst)
    copied = set(src.manifest.sources)
    return MigrateReport(src.name, dst.name, len(copied), sum(len(c) for c in by_source.values()), embedded,
                         kept=len(held - copied), replaced=len(held & copied), target_chunks=len(dst))


def _copy(src: KnowledgeBase, dst: KnowledgeBase, names: list[str], by_source: dict[str, list]) -> int:
    """One batch of sources: vectors, then chunks and manifest entries in one commit."""
    chunks = [c for name in names for c in by_source.get(name, [])]
    hashes = [c.metadata.get("text_hash") or text_hash(c.text) for c in chunks]
    vectors, embedded = vectors_for(src.store, src.embedder, [c.text for c in chunks], hashes)
    dst.store.cache_vectors(hashes, vectors)
    dst.manifest.begin(names)
    dst.store.upsert(chunks, vectors, [src.manifest.sources[c.source].sha256 for c in chunks])
    for name in names:
        dst.store.delete(name, keep_version=src.manifest.sources[name].sha256)
        dst.manifest.sources[name] = src.manifest.sources[name]
    dst.manifest.save()
    dst.manifest.end()
    return embedded


def _verify(src: KnowledgeBase, dst: KnowledgeBase) -> None:
    """Counts, ids and versions of every copied source must match the original."""
    want = src.store.source_versions()
    got = {key: n for key, n in dst.store.source_versions().items() if key[0] in src.manifest.sources}
    src_ids = sorted(c.id for c in src.store.chunks())
    dst_ids = sorted(c.id for c in dst.store.chunks() if c.source in src.manifest.sources)
    if got != want or src_ids != dst_ids:
        raise ConfigError(f"{dst.name}: the copy does not match {src.name} ({sum(got.values())} of "
                          f"{sum(want.values())} chunks); run the migration again")
