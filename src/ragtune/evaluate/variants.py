"""The contestants: which model answers, and whether it retrieves. Every one answers through `ragtune.rag.RAG`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ragtune.config import Settings
from ragtune.models.generators import Generator
from ragtune.rag import RAG, Retriever
from ragtune.types import Answer


@dataclass(frozen=True)
class Variant:
    """A contestant: the model it uses ("base", "finetuned" or "raft") and whether it answers from retrieval."""

    name: str
    model: str
    retrieval: bool


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("base", "base", False),
    Variant("rag", "base", True),
    Variant("finetuned", "finetuned", False),
    Variant("finetuned+rag", "finetuned", True),
    Variant("raft", "raft", True),  # an adapter trained on retrieved passages (finetune --raft), answering with them
)}


class Answerer(Protocol):
    def ask(self, question: str) -> Answer: ...


def default_rag(retriever: Retriever | None, generator: Generator, settings: Settings,
                instruction: str | None = None) -> Answerer:
    """The product's answer path: RAG over the retriever, or closed-book when it is None."""
    return RAG(retriever, generator, settings, instruction=instruction)


def load_model(spec: Any, settings: Settings) -> Generator:
    """A generator from a spec (alias, folder, adapter folder) or a generator object passed through."""
    if not isinstance(spec, (str, Path)):
        return spec
    from ragtune.models.backends import load_generator

    return load_generator(settings.model_copy(update={"generator": settings.generator.model_copy(
        update={"model": str(spec)})}))


def model_name(spec: Any) -> str:
    return str(spec) if isinstance(spec, (str, Path)) else getattr(spec, "name", type(spec).__name__)
