"""Answer chat messages with one configuration: plain generation, or retrieve → prompt → generate → cite.

These functions are synchronous and slow (they run the model); routes call them in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from ragtune.errors import InputError
from ragtune.serve.state import Configuration
from ragtune.types import Answer


@dataclass
class Params:
    """What a request may set for one answer."""

    max_new_tokens: int | None = None
    temperature: float | None = None
    k: int | None = None  # passages to retrieve (RAG configurations only)
    where: dict[str, Any] | None = None  # metadata filter for retrieval, e.g. {"source": "guide.md"}

    def generation(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature}


def retrieve(conf: Configuration, messages: list[dict[str, str]], params: Params) -> Any | None:
    """RAG's retrieval and prompt (a ``Prepared``), or None for a model-only configuration.

    Kept apart from generation so that requests search in parallel and only queue for the model itself.
    """
    if conf.rag is None:
        return None
    return conf.rag.prepare(last_user_message(messages), k=params.k, where=params.where)


def answer(conf: Configuration, messages: list[dict[str, str]], params: Params, prepared: Any = None) -> Answer:
    """The whole answer (with citations when the configuration uses the knowledge base)."""
    final = None
    pieces = []
    for item in stream_answer(conf, messages, params, prepared):
        if isinstance(item, Answer):
            final = item
        else:
            pieces.append(item)
    return final if final is not None else Answer(text="".join(pieces))


def stream_answer(conf: Configuration, messages: list[dict[str, str]], params: Params,
                  prepared: Any = None) -> Iterator[str | Answer]:
    """Text pieces as the model produces them, then the final Answer."""
    if conf.rag is None:
        pieces = []
        for piece in conf.generator.stream(messages, **params.generation()):
            pieces.append(piece)
            yield piece
        yield Answer(text="".join(pieces))
        return
    if prepared is None:
        prepared = retrieve(conf, messages, params)
    if prepared.abstained:
        # Retrieval found nothing relevant: say so rather than ask the model to guess.
        from ragtune.models.prompts import ABSTAIN_TEXT

        final = conf.rag.finish(prepared, ABSTAIN_TEXT)
        yield final.text
        yield final
        return
    pieces = []
    for piece in conf.generator.stream(prepared.messages, **params.generation()):
        pieces.append(piece)
        yield piece
    yield conf.rag.finish(prepared, "".join(pieces))


def last_user_message(messages: list[dict[str, str]]) -> str:
    """RAG answers the latest user turn; earlier turns do not steer retrieval."""
    for message in reversed(messages):
        if message["role"] == "user" and message["content"].strip():
            return message["content"]
    raise InputError("messages: a RAG configuration needs a non-empty message with role 'user'")


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
