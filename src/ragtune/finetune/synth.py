"""`ragtune synth`: question/answer pairs from documents, to fine-tune a model on their knowledge.

Generators, picked by name:
  extractive  deterministic, no model: per chunk, the most informative sentences become a cloze item
              ("Fill in the blank: ... ____ ...", answer = a number, name or rare term of the sentence)
              and a fact question ("What does <source> say about <term>?", answer = the sentence).
  llm         a chat model (a Generator: a local model or an
              OpenAI-compatible endpoint) asked for JSON pairs answerable from the chunk alone;
              pairs whose answer is not supported by the chunk's words are dropped.
Every pair keeps its source, chunk id and chunk text, so evaluation can test for leakage. Pairs are
de-duplicated (normalised question text, then near-duplicates).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from ragtune.atomic import atomic_write
from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.finetune.check import near_duplicate_pairs, normalise
from ragtune.models.generators import Generator
from ragtune.parallel import iter_answers
from ragtune.types import Chunk

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_NUMBER = re.compile(r"\b\d[\d,.:/%-]*(?:\s?(?:%|percent|seconds?|minutes?|hours?|days?|years?|GB|MB|kg|km|m|cm|"
                     r"mm|V|W|°C|euros?|dollars?|USD|EUR))?")
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w-]+(?:\s+(?:of\s+|the\s+)?[A-Z][\w-]+)*")
_WORD = re.compile(r"[A-Za-z][A-Za-z-]{6,}")
_STOP = {"because", "through", "however", "between", "without", "against", "another", "therefore", "although"}


@dataclass
class QAPair:
    question: str
    answer: str
    source: str
    chunk_id: str
    chunk_text: str
    kind: str  # cloze | fact | llm


MAX_SENTENCE_WORDS = 45  # a longer sentence is not asked about (`choose --plan` sizes synthetic rows by it)


def _sentences(text: str) -> list[str]:
    flat = " ".join(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    return [s.strip() for s in _SENTENCE.split(flat) if 6 <= len(s.split()) <= MAX_SENTENCE_WORDS]


def _answer_span(sentence: str) -> str | None:
    """The span worth asking about: a number (with unit), else a proper name, else the longest rare word."""
    for pattern in (_NUMBER, _NAME):
        spans = [m.group(0).strip(" ,.") for m in pattern.finditer(sentence) if m.start() > 0]
        spans = [s for s in spans if len(s) > 1]
        if spans:
            return max(spans, key=len)
    words = [w for w in _WORD.findall(sentence) if w.lower() not in _STOP]
    return max(words, key=len) if words else None


def extractive_pairs(chunk: Chunk, per_chunk: int = 2) -> list[QAPair]:
    """Cloze and fact pairs from the ``per_chunk`` most informative sentences of a chunk."""
    scored = sorted(_sentences(chunk.text), key=lambda s: (-len(set(_WORD.findall(s))), s))[:per_chunk]
    pairs = []
    for sentence in scored:
        span = _answer_span(sentence)
        if not span:
            continue
        blank = sentence.replace(span, "_____", 1)
        pairs.append(QAPair(f"Fill in the blank: {blank}", span, chunk.source, chunk.id, chunk.text, "cloze"))
        pairs.append(QAPair(f"What does {Path(chunk.source).stem} say about {span}?", sentence, chunk.source,
                            chunk.id, chunk.text, "fact"))
    return pairs


LLM_PROMPT = ("Write {n} question-answer pairs that can be answered from the passage alone. Reply with one JSON "
              "object per line, like {{\"question\": \"...\", \"answer\": \"...\"}}, and nothing else.\n\n"
              "Passage ({source}):\n{text}")
_JSON_OBJECT = re.compile(r"\{[^{}]*\}")


def llm_pairs(chunk: Chunk, generate, per_chunk: int = 2) -> list[QAPair]:
    """Pairs a chat model writes for a chunk; answers must share most of their words with the chunk."""
    reply = generate([{"role": "user", "content": LLM_PROMPT.format(n=per_chunk, source=chunk.source,
                                                                     text=chunk.text)}], temperature=0.0)
    chunk_words = set(normalise(chunk.text).split())
    pairs = []
    for match in _JSON_OBJECT.finditer(reply):
        try:
            row = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        q, a = str(row.get("question", "")).strip(), str(row.get("answer", "")).strip()
        words = normalise(a).split()
        if q and words and sum(w in chunk_words for w in words) / len(words) >= 0.5:  # grounded in the chunk
            pairs.append(QAPair(q, a, chunk.source, chunk.id, chunk.text, "llm"))
    return pairs[:per_chunk]


def dedupe(pairs: list[QAPair], threshold: float = 0.9) -> list[QAPair]:
    """Drop repeated questions: same normalised text, then near-duplicates (the first one is kept)."""
    seen: set[str] = set()
    unique = []
    for p in pairs:
        key = normalise(p.question)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    drop = {j for _, j, _ in near_duplicate_pairs([p.question for p in unique], threshold)}
    return [p for i, p in enumerate(unique) if i not in drop]


def load_chunks(path: str | Path, settings: Settings) -> list[Chunk]:
    """Chunks of a knowledge-base folder or URL (as stored) or of documents (chunked now with ``[chunking]``, no
    overlap, so that no sentence is asked about twice)."""
    from ragtune.index.stores import is_url

    if is_url(path) or ((Path(path) / "manifest.json").is_file() and (Path(path) / "lance").is_dir()):
        from ragtune.index.knowledge_base import KnowledgeBase

        return kb_chunks(KnowledgeBase(path, settings=settings))
    from ragtune.documents import Chunker, iter_files, load

    chunking = settings.chunking.model_copy(update={"overlap_tokens": 0})
    chunker, chunks = Chunker.from_settings(chunking), []
    for file, source in iter_files([Path(path)]):
        chunks += chunker(load(file, source))
    if not chunks:
        raise InputError(f"{path}: no text found; pass a knowledge-base folder or documents (txt, md, html, pdf, docx)")
    return chunks


def kb_chunks(kb: Any) -> list[Chunk]:
    """An open knowledge base's chunks as stored (any store: `chunks` is part of the VectorStore protocol)."""
    return sorted(kb.store.chunks(), key=lambda c: (c.source, c.position))


def synthesize(chunks: Iterable[Chunk], generator: str = "extractive", generate: Generator | None = None,
               per_chunk: int = 2, concurrency: int = 1, progress: bool = True) -> list[QAPair]:
    """QA pairs from chunks with the named generator, de-duplicated. ``llm`` asks ``generate`` (a Generator),
    ``concurrency`` chunks at once (an endpoint answers several requests together)."""
    from tqdm.auto import tqdm

    chunks = list(chunks)
    if generator == "extractive":
        make = lambda c: extractive_pairs(c, per_chunk)  # noqa: E731
    elif generator == "llm" and generate is not None:
        make = lambda c: llm_pairs(c, generate, per_chunk)  # noqa: E731
    elif generator == "llm":
        raise InputError("generator 'llm': needs a model; pass --model or configure [generator]")
    else:
        raise InputError(f"generator '{generator}': unknown; use extractive or llm")
    bar = tqdm(chunks, desc=f"synth ({generator})", unit="chunk", disable=not progress)
    pairs = [p for made in iter_answers(make, bar, concurrency) for p in made]  # in chunk order at any concurrency
    return dedupe(pairs)


def held_out_pairs(chunks: list[Chunk], n: int, seed: int, generator: str = "extractive",
                   generate: Generator | None = None, concurrency: int = 1, max_words: int = 5,
                   avoid: set[str] | None = None, accept: Callable[[str], bool] | None = None) -> list[QAPair]:
    """Up to ``n`` pairs, one per chunk, from a seeded shuffle of half the chunks (the other half is left to
    training synthesis): test questions no training pair shares a passage with (`training_pairs` leaves their
    chunks out). Answers longer than ``max_words`` words (a sentence where a span is wanted), answers ``accept``
    refuses, and questions in ``avoid`` (normalised: lower-case, single spaces) are passed over."""
    pairs: list[QAPair] = []
    if n <= 0:
        return pairs
    chunks = list(chunks)
    random.Random(seed).shuffle(chunks)
    chunks = chunks[:len(chunks) // 2]
    seen, used = set(avoid or ()), set()
    for start in range(0, len(chunks), max(n, 8)):
        made = synthesize(chunks[start:start + max(n, 8)], generator=generator, generate=generate, per_chunk=1,
                          concurrency=concurrency, progress=False)
        for p in made:
            key = " ".join(p.question.lower().split())
            if (p.chunk_id in used or key in seen or len(p.answer.split()) > max_words
                    or (accept is not None and not accept(p.answer))):
                continue
            seen.add(key)
            used.add(p.chunk_id)
            pairs.append(p)
            if len(pairs) == n:
                return pairs
    return pairs


def training_pairs(chunks: list[Chunk], reserved: set[str], generator: str = "extractive",
                   generate: Generator | None = None, per_chunk: int = 2, progress: bool = False) -> list[QAPair]:
    """Training pairs from every chunk but the ``reserved`` ones (the chunks held-out questions came from)."""
    return synthesize([c for c in chunks if c.id not in reserved], generator, generate, per_chunk=per_chunk,
                      progress=progress)


def write_pairs(pairs: list[QAPair], out: str | Path) -> Path:
    """JSONL (question, answer, source, chunk_id, chunk_text, kind), written atomically."""
    out = atomic_write(out, "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs))
    return out
