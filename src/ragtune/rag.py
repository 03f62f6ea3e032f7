"""The one answer path: retrieve → abstain → prompt → generate → cite.

    rag = RAG(KnowledgeBase("kb"))
    answer = rag.ask("How long is the warranty?")
    answer.text, [(c.n, c.source) for c in answer.citations]

``RAG(None, generator)`` is closed-book (the bare model, no passages): the baseline of evaluation and the
model-only configurations of the server. ``ask``, ``stream``, ``serve`` and ``evaluate`` all go through
`RAG.generate`, and the whole reply is always the joined stream. When retrieval finds nothing relevant the answer
says so without asking the model (``answer.abstained``).
"""

from __future__ import annotations

import collections.abc
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.index.compress import compress, content_words
from ragtune.metrics import is_abstention
from ragtune.models.base import Generator
from ragtune.models.prompts import ABSTAIN_TEXT, closed_book_messages, rag_messages
from ragtune.types import Answer, Citation, Hit, Message

# What `RAG.generate` yields: text pieces, then the final Answer; closing it stops generation early.
AnswerStream = collections.abc.Generator[str | Answer, None, None]

CITATION = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")  # [1], [2, 3], [1; 4], [ 1 ]: the one marker pattern


@runtime_checkable
class Retriever(Protocol):
    """What RAG retrieves from: a KnowledgeBase on either store, or anything that searches the same way."""

    def search(self, query: str, k: int = 5, where: dict[str, Any] | None = None) -> list[Hit]:
        """The k best passages for a query, best first; ``where`` filters on metadata."""
        ...


@dataclass
class Prepared:
    """Everything decided before generation: the passages, the messages, and whether to abstain."""

    question: str
    hits: list[Hit] = field(default_factory=list)  # the passages in the prompt, numbered 1..len(hits)
    messages: list[Message] = field(default_factory=list)
    abstained: bool = False


class RAG:
    """Answer questions from a retriever (or closed-book when it is None) with a Generator.

    ``instruction``: the task's own instruction (e.g. what a fine-tuned model was trained with), put first in the
    system prompt of both the closed-book and the RAG prompt.
    """

    def __init__(self, retriever: Retriever | None = None, generator: Generator | None = None,
                 settings: Settings | None = None, *, instruction: str | None = None,
                 count_tokens: Callable[[str], int] | None = None) -> None:
        self.retriever = retriever
        # passed down by the caller; else the knowledge base's own, else the defaults (never re-read from files here)
        self.settings = settings or getattr(retriever, "settings", None) or Settings()
        self.instruction = instruction
        self._generator = generator
        self._count_tokens = count_tokens  # None: the generator's tokenizer (RAFT passes the trained model's)

    @property
    def generator(self) -> Generator:
        # Loaded on first use, so an abstention never pays for loading a model.
        if self._generator is None:
            from ragtune.models.backends import load_generator

            self._generator = load_generator(self.settings.generator)
        return self._generator

    def ask(self, question: str, k: int | None = None, where: dict[str, Any] | None = None,
            **generation: Any) -> Answer:
        """The complete Answer (the joined stream)."""
        return final_answer(self.stream(question, k, where, **generation))

    def stream(self, question: str, k: int | None = None, where: dict[str, Any] | None = None,
               **generation: Any) -> AnswerStream:
        """Text pieces as they are generated, then the final Answer object."""
        return self.generate(self.prepare(question, k, where), **generation)

    def prepare(self, question: str, k: int | None = None, where: dict[str, Any] | None = None) -> Prepared:
        """Retrieve, decide whether to abstain, and build the prompt."""
        if self.retriever is None:
            return Prepared(question, messages=closed_book_messages(question, self.instruction))
        hits = self.retriever.search(question, k=k or self.settings.retrieval.k, where=where)
        if not hits or not self._relevant(hits):
            return Prepared(question, hits=list(hits), abstained=True)
        return self.build(question, hits)

    def build(self, question: str, hits: list[Hit]) -> Prepared:
        """The prompt for these passages, compressed and fitted as configured. RAFT builds its training prompts
        here too, so that what a model is trained on is byte for byte what it is shown when answering."""
        if self.settings.rag.context_sentences:
            hits = compress(question, hits, getattr(self.retriever, "embedder", None),
                            self.settings.rag.context_sentences)
        hits = self._fit_context(hits)
        return Prepared(question, hits=hits, messages=rag_messages(question, hits, self.instruction,
                                                                     self.settings.rag.template))

    def prepare_chat(self, messages: list[Message], k: int | None = None,
                     where: dict[str, Any] | None = None) -> Prepared:
        """A chat request: closed-book keeps the whole conversation; RAG answers its latest user turn."""
        if self.retriever is None and self.instruction is None:
            turns = [m.get("content") or "" for m in messages if m.get("role") == "user"]
            return Prepared(turns[-1] if turns else "", messages=[dict(m) for m in messages])
        return self.prepare(last_user_message(messages), k, where)

    def generate(self, prepared: Prepared, **generation: Any) -> AnswerStream:
        """Generate for a prepared prompt: the text pieces, then the final Answer with its citations.

        ``generation``: ``max_new_tokens`` / ``temperature`` for this answer (None: the generator's settings).
        """
        if prepared.abstained:
            yield ABSTAIN_TEXT
            yield self.finish(prepared, ABSTAIN_TEXT)
            return
        pieces = []
        for piece in self.generator.stream(prepared.messages, **generation):
            pieces.append(piece)
            yield piece
        yield self.finish(prepared, "".join(pieces))

    def finish(self, prepared: Prepared, text: str) -> Answer:
        """The Answer for a generated text: its [n] markers mapped to the passages of ``prepared``."""
        text = text.strip()
        if prepared.abstained:
            return Answer(text=text, hits=prepared.hits, abstained=True)
        # a written [n] whose passage holds no claim beside its marker is not kept: small models often put the
        # right answer beside the wrong number; then, as when nothing was cited, the passages the words come from
        claims = claimed(text)
        citations = [c for c in cite(text, prepared.hits) if backed(claims[c.n], c.text)]
        if not citations and prepared.hits and not is_abstention(text):
            citations = infer_citations(text, prepared.hits)
        return Answer(text=text, citations=citations, hits=prepared.hits)

    def _relevant(self, hits: list[Hit]) -> bool:
        dense = [h.metadata["dense_score"] for h in hits if h.metadata.get("dense_score") is not None]
        # Lexical-only retrieval has no similarity to judge by; then any hit counts as relevant.
        return not dense or max(dense) >= self.settings.rag.min_relevance

    def _fit_context(self, hits: list[Hit]) -> list[Hit]:
        """Keep passages in rank order while they fit ``rag.max_context_tokens``; the first one always goes in."""
        budget = self.settings.rag.max_context_tokens
        count = self._count_tokens or self.generator.count_tokens
        kept: list[Hit] = []
        used = 0
        for hit in hits:
            cost = count(hit.text)
            if used + cost > budget:
                if not kept:  # a single oversized passage: keep its beginning
                    share = max(1, int(len(hit.text) * budget / max(cost, 1)))
                    kept.append(Hit(hit.text[:share], hit.source, hit.score, hit.id, dict(hit.metadata)))
                break
            kept.append(hit)
            used += cost
        return kept


def final_answer(items: Iterator[str | Answer]) -> Answer:
    """Drain a `RAG.generate` stream and return its final Answer."""
    answer = None
    for item in items:
        if isinstance(item, Answer):
            answer = item
    assert answer is not None, "RAG.generate always ends with an Answer"
    return answer


def last_user_message(messages: list[Message]) -> str:
    """The latest user turn: what RAG retrieves for (earlier turns do not steer retrieval)."""
    for message in reversed(messages):
        if message.get("role") == "user" and (message.get("content") or "").strip():
            return message["content"]
    raise InputError("messages: needs a non-empty message with role 'user'")


def cite(text: str, hits: list[Hit]) -> list[Citation]:
    """Citations for every [n] in ``text`` that names a passage (1..len(hits)), in order of first mention."""
    seen: dict[int, Citation] = {}
    for match in CITATION.finditer(text):
        for number in re.split(r"[,;]", match.group(1)):
            n = int(number)
            if 1 <= n <= len(hits) and n not in seen:
                hit = hits[n - 1]
                seen[n] = Citation(n=n, source=hit.source, text=hit.text, score=hit.score)
    return list(seen.values())


SUPPORT = 0.3  # share of an answer's content words a passage must hold to back it: below it, mostly chance


def _answer_words(text: str) -> set[str]:
    return content_words(CITATION.sub(" ", text))  # the markers' numbers are not the answer's words


def claimed(text: str) -> dict[int, list[str]]:
    """What each [n] of ``text`` may stand behind: per marker, the words since the previous marker and the words
    up to the next one ("The answer is: [2] Backups run every 6 hours." cites what follows it)."""
    markers = list(CITATION.finditer(text))
    claims: dict[int, list[str]] = {}
    for i, match in enumerate(markers):
        before = text[markers[i - 1].end() if i else 0:match.start()]
        after = text[match.end():markers[i + 1].start() if i + 1 < len(markers) else len(text)]
        for number in re.split(r"[,;]", match.group(1)):
            claims.setdefault(int(number), []).extend([before, after])
    return claims


def backed(claims: list[str], passage: str) -> bool:
    """The passage holds at least `SUPPORT` of the content words of one of the claims; claims with no content
    words ("Yes [2]", a bare "[2]") cannot be checked, and a citation with nothing else is taken as written."""
    worded = [claim for claim in claims if _answer_words(claim)]
    return not worded or any(supports(claim, passage) for claim in worded)


def supports(claim: str, passage: str) -> bool:
    """The passage holds at least `SUPPORT` of the claim's content words."""
    words = _answer_words(claim)
    return bool(words) and len(words & content_words(passage)) / len(words) >= SUPPORT


def infer_citations(text: str, hits: list[Hit], limit: int = 2) -> list[Citation]:
    """When the model cited nothing it could be held to: the passages sharing the most content words with the answer.

    Small models (135M) often answer correctly but drop the [n], or write the wrong one. These citations are
    marked ``inferred=True``: they say where the answer's words come from, not what the model claimed.
    """
    words = _answer_words(text)
    if not words:
        return []
    scored = []
    for n, hit in enumerate(hits, start=1):
        share = len(words & content_words(hit.text)) / len(words)
        if share >= SUPPORT:
            scored.append((share, n, hit))
    if not scored:
        return []
    best = max(s for s, _, _ in scored)
    chosen = sorted(((s, n, h) for s, n, h in scored if s >= 0.8 * best), key=lambda t: (-t[0], t[1]))[:limit]
    return [Citation(n=n, source=h.source, text=h.text, score=h.score, inferred=True)
            for _, n, h in sorted(chosen, key=lambda t: t[1])]
