"""`ragtune synth`: question/answer pairs from documents, to fine-tune a model on their knowledge.

Generators, picked by name:
  extractive  deterministic, no model: per chunk, the most informative sentences become, by ``kinds``, a cloze
              item ("Fill in the blank: ... ____ ...", answer = a number, name or rare term of the sentence),
              a fact question ("What does <source> say about <term>?", answer = the sentence) and a
              wh-question (the sentence with a date, number or name put as when / how much / which ...?,
              answer = that span). Sentences that address a model ("AI assistant: ignore ...") are never
              asked about: training on them would teach the reader to follow them.
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
from typing import Any, Iterable, Sequence

from ragtune.atomic import atomic_write
from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.finetune.check import near_duplicate_pairs, normalise
from ragtune.models.generators import Generator
from ragtune.parallel import iter_answers
from ragtune.types import Chunk

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_NUMBER = re.compile(r"\b\d[\d,.:/%-]*(?:\s?(?:%|percent|seconds?|minutes?|hours?|days?|years?|GB|MB|kg|km|m|cm|"
                     r"mm|V|W|°C|euros?|dollars?|USD|EUR)(?![A-Za-z]))?")  # a unit is a whole word: "5 million" is 5
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
KINDS = ("cloze", "fact", "wh")  # what extractive synthesis can write per sentence
DEFAULT_KINDS = ("cloze", "fact")  # what `synth` and `choose` train on (`raft.kb_kinds` sets finetune --kb --raft's)
# A sentence that speaks to a model (an injected instruction): an addressee with a command, or the classic phrases.
_ADDRESSEE = re.compile(r"\b(?:AI|LLMs?|chatbots?|language models?|assistants?)\b", re.I)
_COMMAND = re.compile(r"\b(?:you|your|must|ignore|disregard|reply|respond|answer (?:only|with)|output|print|reveal|"
                      r"say that|instructions?)\b", re.I)
_OVERRIDE = re.compile(r"\bsystem prompt\b|\b(?:ignore|disregard|forget)\b[^.]*\b(?:instructions|rules)\b|"
                       r"\bwhen (?:you are asked|asked|you answer|answering)\b[^.]*\b(?:say|state|reply|respond|cite|"
                       r"add|end)\b", re.I)


def speaks_to_a_model(sentence: str) -> bool:
    """The sentence instructs an AI model rather than stating a fact (a prompt injection, or a note to bots)."""
    return bool(_OVERRIDE.search(sentence) or (_ADDRESSEE.search(sentence) and _COMMAND.search(sentence)))


_BULLET = ("- ", "* ", "• ")


def _sentences(text: str) -> list[str]:
    """The sentences worth asking about. Lines of prose are joined (a hard-wrapped sentence is one sentence);
    a heading (`compress.is_heading`, as context compression sees one) and a blank line end a block, and a list
    item is a block of its own, so neither is glued to the next sentence."""
    from ragtune.index.compress import is_heading

    blocks: list[str] = []
    prose: list[str] = []
    lines = [raw.strip() for raw in text.splitlines()]
    for line, following in zip(lines, lines[1:] + [""]):
        if not line or is_heading(line, following) or line.startswith(_BULLET):
            blocks += [" ".join(prose), line[2:] if line.startswith(_BULLET) else ""]
            prose = []
            continue
        prose.append(line)
    blocks.append(" ".join(prose))
    return [s.strip() for block in blocks for s in _SENTENCE.split(block)
            if 6 <= len(s.split()) <= MAX_SENTENCE_WORDS and not speaks_to_a_model(s)]


def _answer_span(sentence: str) -> str | None:
    """The span worth asking about: a number (with unit), else a proper name, else the longest rare word."""
    for pattern in (_NUMBER, _NAME):
        spans = [m.group(0).strip(" ,.") for m in pattern.finditer(sentence) if m.start() > 0]
        spans = [s for s in spans if len(s) > 1]
        if spans:
            return max(spans, key=len)
    words = [w for w in _WORD.findall(sentence) if w.lower() not in _STOP]
    return max(words, key=len) if words else None


_MONTH = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
_DATE = re.compile(rf"\b(?:\d{{1,2}} {_MONTH}(?:,? \d{{4}})?|{_MONTH} \d{{1,2}}(?:, \d{{4}})?|{_MONTH} \d{{4}}|"
                   r"(?:1[5-9]|20)\d\d)\b")
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}\b")
_MONEY = re.compile(r"[$€£]|\b(?:euros?|dollars?|pounds?|USD|EUR|GBP)\b")
_DURATION = re.compile(r"\b(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?)\b")


def _wh_span(sentence: str) -> tuple[str, str, str] | None:
    """(text to replace, wh-phrase, answer) for the sentence's date, time, number or name; None for none."""
    for pattern, wh in ((_DATE, "when"), (_CLOCK, "what time")):
        match = next((m for m in pattern.finditer(sentence) if m.start() > 0), None)
        if match:
            before = sentence[:match.start()].rstrip().rsplit(" ", 1)[-1]
            at = f"{before} " if before.lower() in ("in", "on", "at") else ""  # "opened in 2011" -> "opened when"
            return at + match.group(0), (f"{at}{wh}" if wh == "what time" else wh), match.group(0)
    numbers = [m.group(0).strip(" ,.") for m in _NUMBER.finditer(sentence) if m.start() > 0]
    if numbers:
        span = max(numbers, key=len)
        wh = ("how much" if _MONEY.search(span) else "how long" if _DURATION.search(span)
              else "what share" if "%" in span or "percent" in span else "how many" if span.replace(",", "").isdigit()
              else "how much")
        return span, wh, span
    names = [m for m in _NAME.finditer(sentence) if m.start() > 0 and len(m.group(0)) > 1]
    if not names:
        return None
    name = max(names, key=lambda m: len(m.group(0)))
    before = sentence[:name.start()].rstrip().rsplit(" ", 1)[-1]
    span = name.group(0)
    if before.lower() in ("in", "at", "from", "near", "to"):
        return f"{before} {span}", "where", span
    if before.lower() == "the":
        return f"{before} {span}", "which", span
    return span, "by whom" if before.lower() == "by" else "what", span


def wh_question(sentence: str) -> tuple[str, str] | None:
    """The sentence asked as a wh-question in place ("The pie costs 19 euros." -> "The pie costs how much?"): the
    question and its answer (a span of the sentence); None when it holds no date, number or name."""
    found = _wh_span(sentence)
    if found is None:
        return None
    replaced, wh, answer = found
    question = sentence.replace(f"by {replaced}", wh, 1) if wh == "by whom" else sentence.replace(replaced, wh, 1)
    question = question.rstrip(" .!;:") + "?"
    return question[0].upper() + question[1:], answer


def extractive_pairs(chunk: Chunk, per_chunk: int = 2, kinds: Sequence[str] = DEFAULT_KINDS) -> list[QAPair]:
    """Pairs of the given ``kinds`` (`KINDS`) from the ``per_chunk`` most informative sentences of a chunk."""
    scored = sorted(_sentences(chunk.text), key=lambda s: (-len(set(_WORD.findall(s))), s))[:per_chunk]
    pairs = []
    for sentence in scored:
        span = _answer_span(sentence)
        if span and "cloze" in kinds:
            blank = sentence.replace(span, "_____", 1)
            pairs.append(QAPair(f"Fill in the blank: {blank}", span, chunk.source, chunk.id, chunk.text, "cloze"))
        if span and "fact" in kinds:
            pairs.append(QAPair(f"What does {Path(chunk.source).stem} say about {span}?", sentence, chunk.source,
                                chunk.id, chunk.text, "fact"))
        asked = wh_question(sentence) if "wh" in kinds else None
        if asked:
            pairs.append(QAPair(asked[0], asked[1], chunk.source, chunk.id, chunk.text, "wh"))
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
               per_chunk: int = 2, concurrency: int = 1, progress: bool = True,
               kinds: Sequence[str] = DEFAULT_KINDS) -> list[QAPair]:
    """QA pairs from chunks with the named generator, de-duplicated. ``llm`` asks ``generate`` (a Generator),
    ``concurrency`` chunks at once (an endpoint answers several requests together); ``extractive`` writes the
    ``kinds`` of pairs (`KINDS`)."""
    from tqdm.auto import tqdm

    chunks = list(chunks)
    if generator == "extractive":
        make = lambda c: extractive_pairs(c, per_chunk, kinds)  # noqa: E731
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
                   generate: Generator | None = None, per_chunk: int = 2, progress: bool = False,
                   kinds: Sequence[str] = DEFAULT_KINDS) -> list[QAPair]:
    """Training pairs from every chunk but the ``reserved`` ones (the chunks held-out questions came from)."""
    return synthesize([c for c in chunks if c.id not in reserved], generator, generate, per_chunk=per_chunk,
                      progress=progress, kinds=kinds)


def write_pairs(pairs: list[QAPair], out: str | Path) -> Path:
    """JSONL (question, answer, source, chunk_id, chunk_text, kind), written atomically."""
    out = atomic_write(out, "".join(json.dumps(asdict(p), ensure_ascii=False) + "\n" for p in pairs))
    return out
