"""How each variant answers: the closed-book model, RAG, and RAG with the task's own instruction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.config import Settings


class ClosedBook:
    """The model alone: the closed-book prompt, with the task's own instruction when the QA set has one."""

    def __init__(self, generator: Any, system: str | None = None):
        self.generator, self.system = generator, system

    def ask(self, question: str) -> Any:
        from ragtune.models.prompts import closed_book_messages
        from ragtune.types import Answer

        messages = closed_book_messages(question)
        if self.system:
            messages[0] = {"role": "system", "content": self.system}
        return Answer(text=self.generator(messages).strip())


def default_rag(kb: Any, generator: Any, settings: Settings, system: str | None = None) -> Any:
    """RAG over the KB, or the closed-book model when kb is None."""
    if kb is None:
        return ClosedBook(generator, system)
    from ragtune.rag import RAG

    rag = RAG(kb=kb, generator=generator, settings=settings)
    return TaskRAG(rag, system) if system else rag


class TaskRAG:
    """RAG whose system prompt starts with the task's instruction, so RAG is judged on the same task wording."""

    def __init__(self, rag: Any, system: str):
        self.rag, self.system = rag, system

    def ask(self, question: str) -> Any:
        prepared = self.rag.prepare(question)
        if prepared.abstained:
            return self.rag.finish(prepared, "")
        first = prepared.messages[0]
        prepared.messages[0] = {"role": first["role"], "content": f"{self.system}\n{first['content']}"}
        return self.rag.finish(prepared, self.rag.generator(prepared.messages))


def load_model(spec: Any, settings: Settings) -> Any:
    """A generator from a spec (alias, folder, adapter folder) or a generator object passed through."""
    if not isinstance(spec, (str, Path)):
        return spec
    from ragtune.models.loading import load_generator

    return load_generator(settings.model_copy(update={"generator": settings.generator.model_copy(
        update={"model": str(spec)})}))


def model_name(spec: Any) -> str:
    return str(spec) if isinstance(spec, (str, Path)) else getattr(spec, "name", type(spec).__name__)
