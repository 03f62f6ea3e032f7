"""The VectorStore contract, run against every backend (LanceDB in a folder, PostgreSQL + pgvector).

Only protocol methods are used: idempotent upserts, versioned deletes, filtered dense and lexical
search, the embedding cache, reopening.
"""

from __future__ import annotations

import numpy as np
import pytest

from ragtune.config import StoreSettings
from ragtune.errors import InputError
from ragtune.index.stores import make_store
from ragtune.types import Chunk

TEXTS = {
    "a.md": ["The solar panels charge the battery during the day.", "Reset the inverter by holding the red button."],
    "b.md": ["Cats sleep for most of the afternoon.", "The battery warranty lasts ten years."],
}


@pytest.fixture(params=["lancedb", "postgres"])
def open_store(request, tmp_path):
    """A function that opens (or reopens) one empty store of the parametrised backend."""
    if request.param == "lancedb":
        return lambda: make_store("lancedb", tmp_path)
    url = request.getfixturevalue("pg_url")
    return lambda: make_store("postgres", url, StoreSettings(backend="postgres", url=url))


def _unit(rng, n, d=8):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _fill(store, rng, version="v1", tags=None):
    chunks = []
    for source, texts in TEXTS.items():
        for i, text in enumerate(texts):
            meta = {"text_hash": f"h-{source}-{i}", "tags": (tags or {}).get(source, [])}
            chunks.append(Chunk(id=f"{source}#{i}", source=source, text=text, position=i, metadata=meta))
    vectors = _unit(rng, len(chunks))
    store.upsert(chunks, vectors, [version] * len(chunks))
    return chunks, vectors


def test_upsert_is_idempotent_and_delete_keeps_a_version(open_store):
    rng = np.random.default_rng(0)
    store = open_store()
    assert store.count() == 0 and store.chunks() == [] and store.source_versions() == {}
    chunks, vectors = _fill(store, rng)
    store.upsert(chunks, vectors, ["v1"] * len(chunks))  # a replayed batch
    assert store.count() == 4
    assert [(c.id, c.text, c.metadata["text_hash"]) for c in store.chunks()] == \
        [(c.id, c.text, c.metadata["text_hash"]) for c in chunks]
    assert store.source_versions() == {("a.md", "v1"): 2, ("b.md", "v1"): 2}
    # a new version of a.md: one chunk kept (same id), then old-version rows deleted
    store.upsert(chunks[:1], vectors[:1], ["v2"])
    assert store.delete("a.md", keep_version="v2") == 1
    assert store.source_versions() == {("a.md", "v2"): 1, ("b.md", "v1"): 2}
    assert store.delete("b.md") == 2
    assert store.delete("missing.md") == 0
    assert store.count() == 1 and [c.id for c in store.chunks()] == ["a.md#0"]


def test_reopen_reads_the_dimension_and_rows(open_store):
    _fill(open_store(), np.random.default_rng(1))
    again = open_store()
    assert again.dimension == 8 and again.count() == 4


def test_dense_search_ranks_by_cosine_and_filters_before_searching(open_store):
    rng = np.random.default_rng(2)
    store = open_store()
    chunks, vectors = _fill(store, rng)
    hits = store.dense_search(vectors[3], k=4)
    assert hits[0].id == chunks[3].id and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert [h.score for h in hits] == pytest.approx(sorted((float(v @ vectors[3]) for v in vectors), reverse=True),
                                                    abs=1e-5)
    only_a = store.dense_search(vectors[3], k=4, where={"source": "a.md"})
    assert {h.source for h in only_a} == {"a.md"} and len(only_a) == 2
    assert store.dense_search(vectors[3], k=1)[0].metadata["text_hash"] == "h-b.md-1"


def test_lexical_search_stems_filters_and_returns_vectors(open_store):
    rng = np.random.default_rng(3)
    store = open_store()
    chunks, vectors = _fill(store, rng, tags={"b.md": ["pets", "faq"]})
    hits = store.lexical_search("batteries", k=5)  # stemmed: battery
    assert {h.id for h in hits} == {"a.md#0", "b.md#1"}
    assert all(h.score > 0 for h in hits)
    np.testing.assert_allclose(hits[0].vector, vectors[[c.id for c in chunks].index(hits[0].id)], rtol=1e-6)
    # the rarer term decides: only one chunk has "warranty", it ranks first
    assert store.lexical_search("battery warranty", k=5)[0].id == "b.md#1"
    assert [h.id for h in store.lexical_search("battery", k=5, where={"source": ["b.md"]})] == ["b.md#1"]
    assert [h.id for h in store.lexical_search("battery", k=5, where={"tags": "faq"})] == ["b.md#1"]
    assert store.lexical_search("battery", k=5, where={"tags": ["nope"]}) == []
    assert store.lexical_search("what's (the) 'battery'? & | !", k=5)  # punctuation and operators are safe
    assert store.lexical_search("   ", k=5) == []
    with pytest.raises(InputError, match="filter 'author'"):
        store.lexical_search("battery", k=5, where={"author": "x"})


def test_embedding_cache_round_trip(open_store):
    rng = np.random.default_rng(4)
    store = open_store()
    assert store.cached_vectors(["x"]) == {}
    vectors = _unit(rng, 3)
    store.cache_vectors(["h1", "h2", "h3"], vectors)
    store.cache_vectors(["h1"], vectors[1:2])  # already known: the first vector stays
    found = store.cached_vectors(["h3", "h1", "unknown", "it's"])
    assert set(found) == {"h1", "h3"}
    np.testing.assert_allclose(found["h3"], vectors[2], rtol=1e-6)
    np.testing.assert_allclose(found["h1"], vectors[0], rtol=1e-6)
    assert set(open_store().cached_vectors(["h1", "h2", "h3"])) == {"h1", "h2", "h3"}  # persisted


def test_optimize_keeps_search_working(open_store):
    store = open_store()
    _fill(store, np.random.default_rng(5))
    store.optimize()
    assert [h.id for h in store.lexical_search("inverter", k=3)] == ["a.md#1"]
