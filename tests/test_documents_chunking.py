"""Chunker properties: size limit, overlap, headings, exact offsets, coverage, stable ids, pathological text."""

from __future__ import annotations

import random
import re

import pytest

from ragtune.config import ChunkingSettings
from ragtune.documents import Chunker
from ragtune.documents.tokens import default_counter
from ragtune.errors import ConfigError
from ragtune.types import Document


def words(text: str) -> int:
    return len(text.split())


def make_text(seed: int = 0, sections: int = 4) -> str:
    """Markdown with headings, short and long paragraphs of numbered sentences (each sentence unique)."""
    rng = random.Random(seed)
    vocab = "pump valve seal gasket flow pressure coolant loop sensor filter motor shaft bearing".split()
    parts, n = ["# Plant Manual"], 0
    for s in range(sections):
        parts.append(f"## Section {s}")
        for _ in range(rng.randint(1, 4)):
            sentences = []
            for _ in range(rng.choice([1, 2, 3, 12])):
                n += 1
                sentences.append(f"Fact {n} says the " + " ".join(rng.choices(vocab, k=rng.randint(4, 14))) + ".")
            parts.append(" ".join(sentences))
    return "\n\n".join(parts) + "\n"


def check_invariants(doc: Document, chunks, limit: int, count) -> None:
    assert [c.position for c in chunks] == list(range(len(chunks)))
    covered = bytearray(len(doc.text))
    for c in chunks:
        start, end = c.metadata["start"], c.metadata["end"]
        assert c.text == doc.text[start:end] and c.text == c.text.strip() and c.text
        assert count(c.text) <= limit
        assert c.source == doc.source
        covered[start:end] = b"\x01" * (end - start)
    assert all(covered[i] or ch.isspace() for i, ch in enumerate(doc.text)), "some text is in no chunk"
    starts = [c.metadata["start"] for c in chunks]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)


@pytest.mark.parametrize("limit, overlap", [(24, 6), (40, 0), (64, 16)])
def test_invariants_with_word_counter(limit, overlap):
    doc = Document("manual.md", make_text(seed=limit))
    chunks = Chunker(limit, overlap, count_tokens=words)(doc)
    assert len(chunks) > 3
    check_invariants(doc, chunks, limit, words)


def test_invariants_with_default_tokenizer():
    count = default_counter()
    doc = Document("manual.md", make_text(seed=7, sections=6))
    chunks = Chunker(48, 12)(doc)
    check_invariants(doc, chunks, 48, count)
    assert all(c.metadata["tokens"] == count(c.text) for c in chunks)


def test_tokenizer_counts_are_not_truncated():
    # the packaged tokenizer.json pads and truncates to 128; counts must not be capped
    assert default_counter()("word " * 1000) == 1000
    assert default_counter()("") == 0


def test_overlap_is_whole_sentences_from_previous_chunk():
    text = " ".join(f"Sentence number {i} is here." for i in range(40))  # 5 words per sentence
    doc = Document("s.txt", text)
    chunks = Chunker(30, 12, count_tokens=words)(doc)
    assert len(chunks) > 3
    for prev, nxt in zip(chunks, chunks[1:]):
        shared = prev.metadata["end"] - nxt.metadata["start"]
        assert shared > 0, "consecutive chunks in one paragraph overlap"
        overlap = doc.text[nxt.metadata["start"]:prev.metadata["end"]]
        assert re.fullmatch(r"(Sentence number \d+ is here\. ?)+", overlap), overlap
        assert words(overlap) <= 12
        assert nxt.text.startswith("Sentence number")


def test_no_overlap_when_zero():
    doc = Document("s.txt", " ".join(f"Sentence number {i} is here." for i in range(40)))
    chunks = Chunker(30, 0, count_tokens=words)(doc)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.metadata["start"] > prev.metadata["end"]


def test_headings_start_chunks_and_are_recorded():
    text = ("# Guide\n\nIntro text here.\n\n## Install\n\nStep one. Step two.\n\n## Run\nPress start.\n\n"
            "### Stop\n\nPress stop.")
    doc = Document("g.md", text, {"title": "Guide"})
    chunks = Chunker(100, 10, count_tokens=words)(doc)
    assert [c.text for c in chunks] == ["# Guide\n\nIntro text here.", "## Install\n\nStep one. Step two.",
                                        "## Run\nPress start.", "### Stop\n\nPress stop."]
    assert [c.metadata["heading"] for c in chunks] == ["Guide", "Install", "Run", "Stop"]
    assert all(c.metadata["title"] == "Guide" for c in chunks)


def test_comment_in_code_block_is_not_a_heading():
    text = "## Script\n\n```bash\n# install it\npip install pump\n```\n\nDone."
    chunks = Chunker(100, 0, count_tokens=words)(Document("c.md", text))
    assert [c.text for c in chunks] == [text]
    assert chunks[0].metadata["heading"] == "Script"


def test_heading_stays_with_a_long_paragraph():
    long_para = " ".join(f"Point {i} matters." for i in range(30))  # 90 words
    doc = Document("h.md", f"## Setup\n\n{long_para}")
    chunks = Chunker(20, 5, count_tokens=words)(doc)
    assert chunks[0].text.startswith("## Setup\n\nPoint 0 matters.")
    assert all(c.metadata["heading"] == "Setup" for c in chunks)
    check_invariants(doc, chunks, 20, words)


def test_chunks_never_span_two_sections():
    doc = Document("m.md", make_text(seed=3, sections=8))
    for chunk in Chunker(64, 16, count_tokens=words)(doc):
        lines = [ln for ln in chunk.text.split("\n") if ln.strip()]
        heading_rows = [i for i, ln in enumerate(lines) if ln.startswith("#")]
        # headings may only lead a chunk (a heading followed directly by a sub-heading is fine)
        assert heading_rows == list(range(len(heading_rows)))


def test_ids_are_stable_and_depend_on_source_and_text():
    text = make_text(seed=11)
    first = Chunker(32, 8, count_tokens=words)(Document("a.md", text))
    again = Chunker(32, 8, count_tokens=words)(Document("a.md", text))
    other = Chunker(32, 8, count_tokens=words)(Document("b.md", text))
    assert [(c.id, c.text, c.metadata) for c in first] == [(c.id, c.text, c.metadata) for c in again]
    assert len({c.id for c in first}) == len(first)
    assert all(re.fullmatch(r"[0-9a-f]{20}", c.id) for c in first)
    assert not {c.id for c in first} & {c.id for c in other}


def test_giant_line_without_punctuation():
    rng = random.Random(1)
    text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(3000))
    doc = Document("giant.txt", text)
    chunks = Chunker(50, 10, count_tokens=words)(doc)
    check_invariants(doc, chunks, 50, words)
    assert len(chunks) >= 3000 // 50


def test_one_huge_token_is_cut_by_characters():
    doc = Document("blob.txt", "intro words here\n\n" + "Q" * 20000 + "\n\nafter words")
    chunker = Chunker(16, 4)  # WordPiece counts one 20k-letter word as a single [UNK]: characters cap it
    chunks = chunker(doc)
    check_invariants(doc, chunks, 16, default_counter())
    assert max(len(c.text) for c in chunks) <= chunker.max_chars
    assert chunks[-1].text.endswith("after words")


def test_whitespace_and_empty_documents_have_no_chunks():
    chunker = Chunker(32, 8, count_tokens=words)
    assert chunker(Document("w.txt", " \n\n\t \n")) == []
    assert chunker(Document("e.txt", "")) == []


def test_page_of_chunk_start():
    doc = Document("p.pdf", "one two three\n\nfour five six\n\nseven", {"page_starts": [0, 15, 30]})
    chunks = Chunker(9, 0, count_tokens=lambda t: 3 * len(t.split()))(doc)
    assert [(c.text, c.metadata["page"]) for c in chunks] == [("one two three", 1), ("four five six", 2),
                                                              ("seven", 3)]
    together = Chunker(32, 0, count_tokens=words)(doc)
    assert [(c.metadata["page"], c.metadata["page_end"]) for c in together] == [(1, 3)]


def test_settings_and_bad_parameters():
    chunker = Chunker.from_settings(ChunkingSettings(chunk_tokens=128, overlap_tokens=16))
    assert (chunker.chunk_tokens, chunker.overlap_tokens) == (128, 16)
    with pytest.raises(ConfigError, match="chunk_tokens"):
        Chunker(chunk_tokens=2)
    with pytest.raises(ConfigError, match="overlap_tokens"):
        Chunker(chunk_tokens=64, overlap_tokens=40)
