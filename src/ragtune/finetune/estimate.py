"""Training time in advance, from a short measurement of this machine (`ragtune choose --plan`, and
`ragtune finetune --kb --raft` before it trains).

One prefill (a forward pass, ``max_new_tokens=1``) of a prompt of the training examples' size is timed with the
generator; a training step is counted as three forward passes (forward and backward) per example of the global
batch, and the run's steps come from `train.plan_run`, as the run will plan them. Model loading, evaluation and
early stopping are not counted, and a batched step is faster per example than single passes, so the figure
tends to be overstated on a busy machine: read it as an order of magnitude.
"""

from __future__ import annotations

import time
from typing import Any

from ragtune.config import FinetuneSettings

PASSES_PER_EXAMPLE = 3  # forward + backward


def generation_seconds(generate: Any, messages: list[dict[str, str]], max_new_tokens: int = 1) -> float:
    """Wall time of one reply of ``max_new_tokens`` tokens (1: the prompt's prefill, a forward pass)."""
    started = time.perf_counter()
    generate(messages, max_new_tokens=max_new_tokens)
    return time.perf_counter() - started


def training_seconds(train_examples: int, settings: FinetuneSettings, forward: float) -> float:
    """Seconds the run would train on ``train_examples`` examples, at ``forward`` seconds per forward pass."""
    from ragtune.finetune.train import plan_run

    steps = plan_run(max(train_examples, 1), settings, 1).total
    return steps * PASSES_PER_EXAMPLE * settings.batch_size * settings.gradient_accumulation * forward
