"""Plain data that flows between the stages: documents → chunks → hits → answers, and training examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]  # a chat turn: {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass
class Document:
    """Text extracted from one source file (or one record of a dataset)."""

    source: str  # stable name: the path relative to where ingestion started, or the URL/record id
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)  # title, format, page count, tags...


@dataclass
class Chunk:
    """A retrievable piece of a document."""

    id: str  # stable: derived from source + position + text hash
    source: str
    text: str
    position: int  # index of the chunk within its document
    metadata: dict[str, Any] = field(default_factory=dict)  # e.g. heading, page, char offsets, tags


@dataclass
class Hit:
    """A chunk returned by a search, with its score (higher is better)."""

    text: str
    source: str
    score: float
    id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Citation:
    """The chunk behind one [n] marker of an answer."""

    n: int
    source: str
    text: str
    score: float = 0.0
    inferred: bool = False  # the model cited nothing it could be held to; picked by word overlap with the answer


@dataclass
class Answer:
    """What RAG (or a bare model) answered, with the passages it was given."""

    text: str
    citations: list[Citation] = field(default_factory=list)  # only the [n] the answer cites
    hits: list[Hit] = field(default_factory=list)  # every passage put in the prompt
    abstained: bool = False  # retrieval found nothing relevant, so the model was not asked to guess

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.text,
            "citations": [{"n": c.n, "source": c.source, "text": c.text} for c in self.citations],
        }


@dataclass
class Example:
    """One training example: a chat (the assistant turns are the answer) or raw text."""

    messages: list[dict[str, str]] = field(default_factory=list)
    text: str | None = None  # raw text for continued pre-training (then messages is empty)
    source: str = ""
    line: int = 0  # 1-based line (JSONL), row (CSV, header = 1) or 0 for documents
    gold_source: str | None = None  # the row's "source" (or first of "gold_sources"): the passage holding the answer

    @property
    def prompt(self) -> str:
        """Everything the model is given (all turns but the last answer), as plain text."""
        if self.text is not None:
            return ""
        return "\n".join(m["content"] for m in self.messages[:-1])

    @property
    def answer(self) -> str:
        if self.text is not None:
            return self.text
        return self.messages[-1]["content"] if self.messages else ""

    def where(self) -> str:
        return f"{self.source}:{self.line}" if self.line else self.source
