"""One evaluation's state, decided once by `runner.setup` and read by every step after it (freshness too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ragtune.config import Settings
from ragtune.evaluate.qa import QASet
from ragtune.evaluate.resources import release
from ragtune.evaluate.store import PredictionLog
from ragtune.evaluate.variants import VARIANTS, Answerer, default_rag, load_model

RagFactory = Callable[..., Answerer]  # (retriever or None, generator, settings, instruction=...) -> .ask(q) -> Answer


@dataclass
class EvalRun:
    """Everything one evaluation needs, decided once by `setup`."""

    qa: QASet
    settings: Settings
    out: Path
    models: dict[str, Any]  # "base" / "finetuned" / "raft" -> a model spec or a Generator
    kb: Any  # the Retriever, or None
    wanted: list[str]
    seen: set[str]
    log: PredictionLog
    seed: int = 0
    judge: Any = None
    rag_factory: RagFactory = default_rag
    gens: dict[str, Any] = field(default_factory=dict)  # at most one model in memory, keyed like ``models``
    per_variant: dict[str, list[dict]] = field(default_factory=dict)
    ranked: dict[str, list[str]] = field(default_factory=dict)

    def keep_only(self, which: str) -> None:
        """Free every model but ``which`` (and hand the memory back), so the next variant's peak RSS is its own."""
        if set(self.gens) - {which}:
            self.gens = {k: g for k, g in self.gens.items() if k == which}
            release()

    def generator(self, which: str) -> Any:
        if which not in self.gens:
            self.keep_only(which)  # one model in memory at a time
            self.gens[which] = load_model(self.models[which], self.settings)
        return self.gens[which]

    def answerer(self, variant: str, retriever: Any = None) -> Answerer:
        """The contestant's answer path; ``retriever`` replaces the run's knowledge base (the freshness copy)."""
        v = VARIANTS[variant]
        instruction = {"instruction": self.qa.system} if self.qa.system else {}
        return self.rag_factory((retriever or self.kb) if v.retrieval else None, self.generator(v.model),
                                self.settings, **instruction)
