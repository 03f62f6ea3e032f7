"""Answer chat messages with one configuration, through the one answer path (`ragtune.rag.RAG`).

Every configuration holds a `RAG`: closed-book (no retriever) for the model-only ones. These functions are
synchronous and slow (they run the model); routes call them in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragtune.rag import AnswerStream, Prepared, final_answer
from ragtune.serve.state import Configuration
from ragtune.types import Answer, Message


@dataclass
class Params:
    """What a request may set for one answer."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    k: int | None = None  # passages to retrieve (RAG configurations only)
    where: dict[str, Any] | None = None  # metadata filter for retrieval, e.g. {"source": "guide.md"}

    def generation(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature}


def retrieve(conf: Configuration, messages: list[Message], params: Params) -> Prepared:
    """Retrieval and prompt, kept apart from generation so that requests search in parallel and only queue for
    the model itself."""
    return conf.rag.prepare_chat(messages, k=params.k, where=params.where)


def answer(conf: Configuration, messages: list[Message], params: Params, prepared: Prepared | None = None) -> Answer:
    """The whole answer (with citations when the configuration uses the knowledge base)."""
    return final_answer(stream_answer(conf, messages, params, prepared))


def stream_answer(conf: Configuration, messages: list[Message], params: Params,
                  prepared: Prepared | None = None) -> AnswerStream:
    """Text pieces as the model produces them, then the final Answer."""
    if prepared is None:
        prepared = retrieve(conf, messages, params)
    return conf.rag.generate(prepared, **params.generation())


def citations_json(ans: Answer) -> list[dict[str, Any]]:
    return [{"n": c.n, "source": c.source, "text": c.text, "score": round(float(c.score), 6)} for c in ans.citations]


def passages_json(ans: Answer) -> list[dict[str, Any]]:
    """Every passage the model was shown, numbered as in the prompt ([1] is the first)."""
    return [{"n": i, "source": h.source, "text": h.text, "score": round(float(h.score), 6),
             "metadata": to_plain(h.metadata)} for i, h in enumerate(ans.hits, start=1)]


def to_plain(value: Any) -> Any:
    # Store metadata may hold numpy scalars or arrays; JSON wants plain values.
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
