"""Fine-tuning: datasets and their checks, the training loop, and synthetic QA from documents."""

from __future__ import annotations

from typing import Any

_PUBLIC = {
    "finetune": "ragtune.finetune.train",
    "FineTuner": "ragtune.finetune.train",
    "FineTuneResult": "ragtune.finetune.train",
    "check_dataset": "ragtune.finetune.check",
    "load_examples": "ragtune.finetune.data",
    "synthesize": "ragtune.finetune.synth",
}


def __getattr__(name: str) -> Any:  # lazy: importing the package must not pull in torch
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ragtune.finetune' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_PUBLIC[name]), name)
