"""Context compression: keep only the sentences of the retrieved passages that bear on the question.

Small models (135M-270M) lose the answer in a page of context and restate the question instead; given the
two or three sentences that matter they copy the answer far more often (measured in bench/choose.py).
Each sentence is scored by its embedding similarity to the question plus the share of the question's
content words it contains; the best ``n`` are kept, grouped under their passage in reading order, so
passage numbers and citations still point at the source they came from. The idea of LlamaIndex's
SentenceEmbeddingOptimizer, with a lexical term added (names and numbers matter in answers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from ragtune.index.embedders import Embedder
from ragtune.types import Hit

_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][\"'”’)\]]))\s+")
_HEADING_WORDS = 8  # a short line without end punctuation is a heading
_WORD = re.compile(r"[a-z0-9]+")
# The one stop-word list: words that carry no content, for context compression, inferred citations and the
# groundedness metric alike.
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those there here he she they them his her their we you i me my our your not no yes do does did has have "
    "had which who whom what when where why how than then so such can could would should will may might also into "
    "about over under after only any all each".split()
)
_DENSE_WEIGHT = 0.5  # dense and lexical evidence count equally


def content_words(text: str) -> set[str]:
    """Lower-cased words minus stopwords and one- or two-letter words (numbers are kept)."""
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def is_heading(line: str, following: str = "") -> bool:
    """A markdown heading or a short line with no end punctuation and no "key: value" colon, followed by a blank
    line or a capitalised one ("Length of cover" / "The warranty ..."; not "Concentrated O" / "2 will ...")."""
    line = line.strip()
    looks_like_one = line.startswith("#") or (0 < len(line.split()) <= _HEADING_WORDS and ":" not in line
                                              and line[-1] not in ".!?…;,\"'”’)]}")
    # what follows a heading starts a sentence or another heading (a "# comment" in code is followed by code)
    return looks_like_one and (not following or following[0].isupper() or following.startswith("#"))


def sentences(text: str) -> list[str]:
    """The text's sentences (line breaks inside one are kept); headings are glued to the sentence after them
    ("Length of cover: The warranty lasts 30 months."), since a heading alone answers nothing."""
    out: list[str] = []
    headings: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        pieces = [p.strip() for p in _SENTENCE_END.split("\n".join(paragraph)) if p.strip()]
        if pieces and headings:
            pieces[0] = " / ".join(h.lstrip("#").strip() for h in headings) + ": " + pieces[0]
            headings.clear()
        out.extend(pieces)
        paragraph.clear()

    lines = text.splitlines()
    block_start = True  # headings open a block: a short line inside a paragraph ("Al\n2O\n3") is not one
    for i, line in enumerate(lines):
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not line.strip():
            flush()
            block_start = True
        elif block_start and is_heading(line, following):
            headings.append(line.strip())
        else:
            paragraph.append(line.rstrip())  # keeps code indented
            block_start = False
    flush()
    paragraph.extend(headings)  # headings with nothing after them are text like any other
    headings.clear()
    flush()
    return out


def compress(question: str, hits: Sequence[Hit], embedder: Embedder | None, keep: int) -> list[Hit]:
    """The hits cut down to the ``keep`` sentences most relevant to ``question``; hits left empty are dropped.
    Without an embedder the lexical score alone decides.

    Each returned hit keeps its source, score and id; ``metadata["compressed_from"]`` holds the
    passage's length in characters before compression.
    """
    pieces = [(i, s) for i, hit in enumerate(hits) for s in sentences(hit.text)]
    if keep <= 0 or len(pieces) <= keep:
        return list(hits)
    words = content_words(question)
    score = np.array([len(words & content_words(s)) / max(len(words), 1) for _, s in pieces])
    if embedder is not None:
        vectors = embedder([question] + [s for _, s in pieces])
        score = _DENSE_WEIGHT * (vectors[1:] @ vectors[0]) + (1 - _DENSE_WEIGHT) * score
    chosen = set(np.argsort(-score, kind="stable")[:keep].tolist())
    out = []
    for i, hit in enumerate(hits):
        kept = [s for j, (owner, s) in enumerate(pieces) if owner == i and j in chosen]
        if kept:
            metadata = {**hit.metadata, "compressed_from": len(hit.text)}
            out.append(Hit(" ".join(kept), hit.source, hit.score, hit.id, metadata))
    return out
