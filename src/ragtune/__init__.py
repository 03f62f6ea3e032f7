"""ragtune: RAG or fine-tuning? Build both on your own data, measure both, choose with evidence.

    import ragtune
    kb = ragtune.KnowledgeBase("kb")
    kb.add(["docs/"])
    print(ragtune.RAG(kb).ask("How do I reset the device?").text)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ragtune.openmp import wait_defaults

# Before anything imports torch: OpenMP threads that sleep when idle instead of spinning, so a busy machine does
# not multiply training time (ragtune/openmp.py says why; a value the user set is kept).
wait_defaults(os.environ)

__version__ = "0.1.0"

# Public names resolve lazily so `import ragtune` stays fast (no torch until it is needed).
_PUBLIC = {
    "KnowledgeBase": "ragtune.index.knowledge_base",
    "RAG": "ragtune.rag",
    "load_generator": "ragtune.models.backends",
    "finetune": "ragtune.finetune.train",
    "FineTuner": "ragtune.finetune.train",
    "evaluate": "ragtune.evaluate.runner",
    "advise": "ragtune.advise",
    "Settings": "ragtune.config",
    "load_settings": "ragtune.config",
    "RagtuneError": "ragtune.errors",
    "Answer": "ragtune.types",
    "Citation": "ragtune.types",
    "Hit": "ragtune.types",
    "Document": "ragtune.types",
    "Choice": "ragtune.choose.recipe",
    "Chunk": "ragtune.types",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ragtune' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)


if TYPE_CHECKING:  # for editors and type checkers
    from ragtune.advise import advise
    from ragtune.choose.recipe import Choice
    from ragtune.config import Settings, load_settings
    from ragtune.errors import RagtuneError
    from ragtune.evaluate.runner import evaluate
    from ragtune.finetune.train import FineTuner, finetune
    from ragtune.index.knowledge_base import KnowledgeBase
    from ragtune.models.backends import load_generator
    from ragtune.rag import RAG
    from ragtune.types import Answer, Chunk, Citation, Document, Hit
