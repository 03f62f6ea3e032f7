"""KnowledgeBase: incremental ingestion, replacement, removal, filters, embedder mismatch, crash reconcile."""

from __future__ import annotations

import pytest

from ragtune.config import load_settings
from ragtune.errors import ConfigError, InputError
from ragtune.index.embedders import SentenceTransformerEmbedder
from ragtune.index.knowledge_base import KnowledgeBase
from ragtune.types import Chunk, Document


class CountingEmbedder:
    """Wraps a real embedder and counts every text it is asked to embed."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.texts: list[str] = []

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def __call__(self, texts):
        self.texts += list(texts)
        return self.inner(texts)


@pytest.fixture(scope="module")
def tiny(tiny_embedder_dir):
    return SentenceTransformerEmbedder(str(tiny_embedder_dir))


@pytest.fixture
def counting(tiny):
    return CountingEmbedder(tiny)


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "solar.md").write_text("# Solar\n\nThe Zephyr panel charges the battery in four hours.\n\n"
                                     "Reset the inverter by holding the red button for ten seconds.\n")
    (folder / "cats.txt").write_text("Cats sleep for most of the afternoon and hunt at dusk.\n")
    (folder / "sub" / "warranty.txt").write_text("The Zephyr battery warranty lasts twelve years.\n")
    return folder


def _kb(tmp_path, embedder, **overrides):
    return KnowledgeBase(tmp_path / "kb", settings=load_settings(tmp_path / "kb", overrides), embedder=embedder)


def test_add_is_incremental_by_content_hash(tmp_path, docs, counting):
    kb = _kb(tmp_path, counting)
    report = kb.add([docs])
    assert [(i.source, i.status) for i in report] == [
        (f"{docs}/cats.txt", "added"), (f"{docs}/solar.md", "added"), (f"{docs}/sub/warranty.txt", "added")]
    assert report.ok and len(kb) == sum(i.chunks for i in report) == report.embedded
    first_calls = len(counting.texts)
    assert first_calls == len(kb)

    again = KnowledgeBase(tmp_path / "kb", embedder=counting).add([docs])
    assert {i.status for i in again} == {"unchanged"} and again.embedded == 0
    assert len(counting.texts) == first_calls  # no embedding work at all

    (docs / "cats.txt").write_text("Cats sleep for most of the afternoon and hunt at dusk.\n\n"
                                   "Dogs guard the Zephyr warehouse at night.\n")
    changed = kb.add([docs])
    assert [i.status for i in changed] == ["updated", "unchanged", "unchanged"]
    cats = [s for s in kb.sources() if s.source.endswith("cats.txt")][0]
    assert cats.chunks == changed.items[0].chunks
    hits = kb.search("Dogs guard the warehouse", k=10, where={"source": cats.source})
    assert {h.source for h in hits} == {cats.source} and len(hits) == cats.chunks
    assert any("Dogs guard" in h.text for h in hits)
    assert len(set(kb.store.ids())) == len(kb) == sum(s.chunks for s in kb.sources())


def test_same_text_is_never_embedded_twice(tmp_path, counting):
    kb = _kb(tmp_path, counting)
    text = "The Zephyr battery warranty lasts twelve years."
    kb.add_documents([Document("one", text), Document("two", text)])
    assert counting.texts == [text]
    removed = kb.remove("one")
    assert removed == 1 and len(kb) == 1
    kb.add_documents([Document("three", text + "\n")])  # chunk text is the same after trimming
    kb.add_documents([Document("one", text)])  # re-added after removal: vector comes from the cache
    assert counting.texts == [text]
    assert sorted(s.source for s in kb.sources()) == ["one", "three", "two"]


def test_remove_and_unknown_source(tmp_path, docs, counting):
    kb = _kb(tmp_path, counting)
    kb.add([docs / "solar.md", docs / "cats.txt"])
    solar = f"{docs}/solar.md"
    n = next(s.chunks for s in kb.sources() if s.source == solar)
    total = len(kb)
    assert kb.remove(solar) == n and len(kb) == total - n
    assert solar not in {h.source for h in kb.search("inverter red button", k=10)}
    with pytest.raises(InputError, match=r"not in the knowledge base.*ragtune sources"):
        kb.remove(solar)


def test_search_modes_filters_and_scores(tmp_path, docs, counting):
    kb = _kb(tmp_path, counting)
    kb.add([docs / "solar.md"], tags=["energy"])
    kb.add([docs / "cats.txt", docs / "sub" / "warranty.txt"])
    hits = kb.search("inverter reset", k=3)
    assert hits[0].source.endswith("solar.md") and "inverter" in hits[0].text
    assert {"dense_score", "lexical_score", "position"} <= set(hits[0].metadata)
    assert -1.0 <= hits[0].metadata["dense_score"] <= 1.0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    lexical = kb.search("warranty", k=5, mode="lexical")
    assert [h.source for h in lexical] == [f"{docs}/sub/warranty.txt"]
    assert len(kb.search("warranty", k=5, mode="dense")) == min(5, len(kb))
    tagged = kb.search("battery", k=5, where={"tags": "energy"})
    assert tagged and {h.source for h in tagged} == {f"{docs}/solar.md"}
    assert kb.search("   ") == []
    with pytest.raises(InputError, match="search mode"):
        kb.search("x", mode="fuzzy")


def test_failed_files_do_not_stop_the_batch(tmp_path, docs, counting):
    (docs / "empty.txt").write_text("")
    kb = _kb(tmp_path, counting)
    report = kb.add([docs / "empty.txt", tmp_path / "missing.md", docs / "cats.txt"])
    assert [i.status for i in report] == ["failed", "failed", "added"]
    assert all(i.reason and "\n" not in i.reason for i in report.failed)
    assert "missing.md" in report.failed[1].reason and not report.ok
    assert [s.source for s in kb.sources()] == [f"{docs}/cats.txt"]


def test_embedder_mismatch_is_a_config_error(tmp_path, docs, counting):
    _kb(tmp_path, counting).add([docs / "cats.txt"])
    other = CountingEmbedder(counting.inner)
    other.name = "sentence-transformers:something-else"
    with pytest.raises(ConfigError, match="built with embedder"):
        KnowledgeBase(tmp_path / "kb", embedder=other)


def test_interrupted_write_is_reconciled_on_open(tmp_path, docs, counting):
    kb = _kb(tmp_path, counting)
    kb.add([docs / "cats.txt", docs / "solar.md"])
    before = len(kb)
    # Simulate a crash after the store commit but before the manifest: new rows of a new version.
    cats = f"{docs}/cats.txt"
    ghost = Chunk(id="ghost", source=cats, text="ghost text", position=9, metadata={"text_hash": "g"})
    kb.manifest.begin([cats])
    kb.store.upsert([ghost], counting.inner([ghost.text]), ["new-sha"])
    assert len(kb) == before + 1
    reopened = KnowledgeBase(tmp_path / "kb", embedder=counting)
    assert len(reopened) == before and "ghost" not in reopened.store.ids()
    assert not reopened.manifest.interrupted
    assert sum(s.chunks for s in reopened.sources()) == before


def test_tied_scores_retrieve_the_same_passages_whatever_order_the_store_returns_them_in(tmp_path, counting):
    # LanceDB's full-text search returned equal BM25 scores in an order that changed between processes, at its
    # cut-off too: the candidates, the fused ranking and RAFT's training prompts with them
    import random

    kb = _kb(tmp_path, counting)
    kb.add_documents([Document(text="The relay in the cabinet trips at forty amps.", source=f"cabinet-{c}.txt")
                      for c in "ABCDEFGH"])  # one text in eight files (templated docs hold many such)
    store, shuffle = kb.store, random.Random(0)

    def lexical_search(query, k, where=None, _inner=store.lexical_search):
        hits = _inner(query, 100, where)  # eight chunks, one score: a store may cut the tie anywhere
        shuffle.shuffle(hits)
        return hits[:k]

    store.lexical_search = lexical_search
    assert len({h.score for h in store.lexical_search("relay amps", 8)}) == 1
    runs = {tuple(h.id for h in kb.search("relay amps", k=3, mode="lexical")) for _ in range(6)}
    assert len(runs) == 1
    assert list(next(iter(runs))) == sorted(h.id for h in kb.search("relay amps", k=8, mode="lexical"))[:3]
