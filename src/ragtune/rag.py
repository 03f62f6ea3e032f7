"""Retrieval-augmented generation: retrieve → prompt → generate → map each [n] back to its passage.

    rag = RAG(KnowledgeBase("kb"))
    answer = rag.ask("How long is the warranty?")
    answer.text, [(c.n, c.source) for c in answer.citations]

``RAG(kb=None)`` is the closed-book variant (the bare model, no passages), used as the baseline in evaluation.
When retrieval finds nothing relevant the answer says so without asking the model (``answer.abstained``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from ragtune.config import Settings, load_settings
from ragtune.index.compress import compress, content_words
from ragtune.models.generators import Generator, Message
from ragtune.models.prompts import ABSTAIN_TEXT, closed_book_messages, rag_messages
from ragtune.types import Answer, Citation, Hit

_MARKER = re.compile(r"\[\s*(\d+(?:\s*[,;]\s*\d+)*)\s*\]")  # [1], [2, 3], [1; 4]


@dataclass
class Prepared:
    """Everything decided before generation: the passages, the messages, and whether to abstain."""

    question: str
    hits: list[Hit] = field(default_factory=list)  # the passages in the prompt, numbered 1..len(hits)
    messages: list[Message] = field(default_factory=list)
    abstained: bool = False


class RAG:
    """Answer questions from a knowledge base (or closed-book when ``kb`` is None) with a Generator."""

    def __init__(self, kb: Any = None, generator: Generator | None = None, settings: Settings | None = None) -> None:
        self.kb = kb
        self.settings = settings or getattr(kb, "settings", None) or load_settings()
        self._generator = generator

    @property
    def generator(self) -> Generator:
        # Loaded on first use, so an abstention or a closed kb never pays for loading a model.
        if self._generator is None:
            from ragtune.models.loading import load_generator

            self._generator = load_generator(self.settings.generator)
        return self._generator

    def ask(self, question: str, k: int | None = None, where: dict[str, Any] | None = None) -> Answer:
        prepared = self.prepare(question, k, where)
        if prepared.abstained:
            return self.finish(prepared, ABSTAIN_TEXT)
        return self.finish(prepared, self.generator(prepared.messages))

    def stream(self, question: str, k: int | None = None,
               where: dict[str, Any] | None = None) -> Iterator[str | Answer]:
        """Text pieces as they are generated, then the final Answer object."""
        prepared = self.prepare(question, k, where)
        if prepared.abstained:
            yield ABSTAIN_TEXT
            yield self.finish(prepared, ABSTAIN_TEXT)
            return
        pieces = []
        for piece in self.generator.stream(prepared.messages):
            pieces.append(piece)
            yield piece
        yield self.finish(prepared, "".join(pieces))

    def prepare(self, question: str, k: int | None = None, where: dict[str, Any] | None = None) -> Prepared:
        """Retrieve, decide whether to abstain, and build the prompt."""
        if self.kb is None:
            return Prepared(question, messages=closed_book_messages(question))
        hits = self.kb.search(question, k=k or self.settings.retrieval.k, where=where)
        if not hits or not self._relevant(hits):
            return Prepared(question, hits=list(hits), abstained=True)
        if self.settings.rag.context_sentences:
            hits = compress(question, hits, getattr(self.kb, "embedder", None), self.settings.rag.context_sentences)
        hits = self._fit_context(hits)
        return Prepared(question, hits=hits, messages=rag_messages(question, hits))

    def finish(self, prepared: Prepared, text: str) -> Answer:
        """The Answer for a generated text: its [n] markers mapped to the passages of ``prepared``."""
        text = text.strip()
        if prepared.abstained:
            return Answer(text=text, hits=prepared.hits, abstained=True)
        citations = cite(text, prepared.hits)
        if not citations and prepared.hits and ABSTAIN_TEXT.lower()[:20] not in text.lower():
            citations = infer_citations(text, prepared.hits)
        return Answer(text=text, citations=citations, hits=prepared.hits)

    def _relevant(self, hits: list[Hit]) -> bool:
        dense = [h.metadata["dense_score"] for h in hits if h.metadata.get("dense_score") is not None]
        # Lexical-only retrieval has no similarity to judge by; then any hit counts as relevant.
        return not dense or max(dense) >= self.settings.rag.min_relevance

    def _fit_context(self, hits: list[Hit]) -> list[Hit]:
        """Keep passages in rank order while they fit ``rag.max_context_tokens``; the first one always goes in."""
        budget = self.settings.rag.max_context_tokens
        count = getattr(self.generator, "count_tokens", None) or _estimate_tokens  # endpoints: estimate
        kept, used = [], 0
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


def cite(text: str, hits: list[Hit]) -> list[Citation]:
    """Citations for every [n] in ``text`` that names a passage (1..len(hits)), in order of first mention."""
    seen: dict[int, Citation] = {}
    for match in _MARKER.finditer(text):
        for number in re.split(r"[,;]", match.group(1)):
            n = int(number)
            if 1 <= n <= len(hits) and n not in seen:
                hit = hits[n - 1]
                seen[n] = Citation(n=n, source=hit.source, text=hit.text, score=hit.score)
    return list(seen.values())


def infer_citations(text: str, hits: list[Hit], limit: int = 2) -> list[Citation]:
    """When the model cited nothing: the passages sharing the most content words with the answer.

    Small models (135M) often answer correctly but drop the [n]. These citations are marked
    ``inferred=True``: they say where the answer's words come from, not what the model claimed.
    """
    words = content_words(text)
    if not words:
        return []
    scored = []
    for n, hit in enumerate(hits, start=1):
        share = len(words & content_words(hit.text)) / len(words)
        if share >= 0.3:  # below this the overlap is mostly chance
            scored.append((share, n, hit))
    if not scored:
        return []
    best = max(s for s, _, _ in scored)
    chosen = sorted((s, n, h) for s, n, h in scored if s >= 0.8 * best)
    chosen = sorted(chosen, key=lambda t: (-t[0], t[1]))[:limit]
    return [Citation(n=n, source=h.source, text=h.text, score=h.score, inferred=True)
            for _, n, h in sorted(chosen, key=lambda t: t[1])]


def _estimate_tokens(text: str) -> int:
    return len(text) // 4 + 1  # about four characters per token for English
