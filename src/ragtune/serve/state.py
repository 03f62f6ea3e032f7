"""What one server holds: the knowledge base, the models loaded once, and the configurations built from them.

A configuration is what a chat request's ``model`` field names:

=================  ==========================================  needs
``base``           the base model alone                        a model
``rag``            the base model answering from the kb        a model and a kb
``finetuned``      the fine-tuned model alone                  --finetuned
``finetuned+rag``  the fine-tuned model answering from the kb  --finetuned and a kb
=================  ==========================================  ========
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ragtune.config import Settings
from ragtune.rag import RAG

if TYPE_CHECKING:
    from ragtune.index.embedders import Embedder
    from ragtune.index.knowledge_base import KnowledgeBase
    from ragtune.models.generators import Generator
    from ragtune.serve.jobs import Ingestor
    from ragtune.winner import Winner

UPLOADS = "uploads"  # inside the kb folder; the only place uploads are written


@dataclass
class Configuration:
    """A servable answer path: a generator, with or without retrieval."""

    name: str
    generator: Generator
    rag: RAG  # the one answer path; closed-book (no retriever) for the model-only configurations
    description: str
    slots: asyncio.Semaphore  # shared by the configurations of one generator: it runs one request at a time

    @property
    def uses_rag(self) -> bool:
        return self.rag.retriever is not None


@dataclass
class ServeState:
    """Everything routes need, created once per process and shared by every request."""

    settings: Settings
    kb: KnowledgeBase | None = None
    kb_dir: Path | None = None
    configurations: dict[str, Configuration] = field(default_factory=dict)
    report_dir: Path | None = None
    api_key: str | None = None
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    ingestor: Ingestor | None = None  # started with the app
    contestant: str | None = None  # `serve --choice`: the one bake-off contestant served

    # The kb routes run only when a knowledge base is served (kb_state checks it); these say so to the type checker.
    @property
    def served_kb(self) -> KnowledgeBase:
        assert self.kb is not None, "kb routes are mounted only with a knowledge base"
        return self.kb

    @property
    def served_uploads(self) -> Path:
        assert self.uploads_dir is not None, "kb routes are mounted only with a knowledge base"
        return self.uploads_dir

    @property
    def served_ingestor(self) -> Ingestor:
        assert self.ingestor is not None, "the ingestor starts with the app when a knowledge base is served"
        return self.ingestor

    @property
    def uploads_dir(self) -> Path | None:
        return self.kb_dir / UPLOADS if self.kb_dir is not None else None

    @property
    def embedder(self) -> Embedder | None:
        return getattr(self.kb, "embedder", None) if self.kb is not None else None


def build_state(settings: Settings, *, kb: KnowledgeBase | None = None, base: Generator | None = None,
                finetuned: Generator | None = None, kb_dir: str | Path | None = None,
                report_dir: str | Path | None = None, api_key: str | None = None,
                winner: Winner | None = None) -> ServeState:
    """Name the configurations that the given knowledge base and generators make possible; with ``winner``
    (`serve --choice`), only that contestant, answering with ``base`` (its model) as `choose` measured it."""
    if kb is not None and kb_dir is None:
        kb_dir = getattr(kb, "path", None) or getattr(kb, "root", None)
    kb_dir = Path(kb_dir) if kb is not None and kb_dir else None
    state = ServeState(settings=settings, kb=kb, kb_dir=kb_dir, api_key=api_key,
                       report_dir=Path(report_dir) if report_dir else None)
    concurrency = max(1, settings.serve.max_concurrent_generations)
    if winner is not None and base is not None:  # `serve --choice`: exactly the contestant `choose` measured
        role = "winner" if winner.recommended else "contestant"
        state.contestant = winner.contestant
        # an instruction (even "") makes a closed-book contestant answer the latest question with the prompt it
        # was measured with, not continue the raw conversation
        rag = RAG(kb if winner.retrieves else None, base, settings, instruction=winner.instruction or "")
        state.configurations[winner.contestant] = Configuration(
            winner.contestant, base, rag, f"the bake-off's {role} {winner.contestant} ({winner.why})",
            asyncio.Semaphore(concurrency))
        return state
    for label, generator in (("base", base), ("finetuned", finetuned)):
        if generator is None:
            continue
        slots = asyncio.Semaphore(concurrency)
        who = f"{label} model {getattr(generator, 'name', '')}".strip()
        state.configurations[label] = Configuration(label, generator, RAG(None, generator, settings),
                                                    f"the {who} alone", slots)
        if kb is not None:
            name = "rag" if label == "base" else "finetuned+rag"
            state.configurations[name] = Configuration(name, generator, RAG(kb, generator, settings),
                                                       f"the {who} answering from the knowledge base", slots)
    return state
