"""Stop a fine-tuning run whose loss diverges, instead of saving a wrecked model.

Call ``check_divergence(losses, learning_rate)`` after every optimizer step with the training losses
so far. It raises TrainingError when the newest loss is NaN or infinite, or when the mean of the last
``WINDOW`` losses has grown to ``RATIO`` times the mean of the first ``WINDOW`` and by at least
``MARGIN`` nats (the margin keeps a small loss that merely doubles, 0.02 → 0.05, from counting).
A healthy run's loss falls or wobbles; one that climbs this far has lost what the model knew.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ragtune.errors import TrainingError

WINDOW = 5
RATIO = 4.0
MARGIN = 2.0


def check_divergence(losses: Sequence[float], learning_rate: float) -> None:
    """Raise TrainingError if the training loss (one value per step, oldest first) is diverging."""
    if not losses:
        return
    step, last = len(losses), float(losses[-1])
    advice = (f"lower the learning rate (now {learning_rate:g}; LoRA usually 1e-4 to 1e-3, full fine-tuning "
              "1e-5) or check the data for broken examples")
    if not math.isfinite(last):
        raise TrainingError(f"fine-tuning diverged at step {step}: the training loss is {last}; {advice}")
    if step < 2 * WINDOW:
        return
    start = sum(losses[:WINDOW]) / WINDOW
    recent = sum(losses[-WINDOW:]) / WINDOW
    if recent > RATIO * start and recent - start > MARGIN:
        raise TrainingError(f"fine-tuning diverged at step {step}: the training loss rose from {start:.3g} to "
                            f"{recent:.3g} (mean of the first and last {WINDOW} steps); {advice}")
