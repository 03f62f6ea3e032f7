"""Cheap CPU speed-ups for generation, picked by name (``generator.optimize``).

- "none": the model as loaded (float32 on CPU).
- "int8": dynamic int8 quantisation of the Linear layers (weights int8, activations quantised per call);
  CPU only, quality close to float32 for these small models.
Measured in bench/generation.py; see docs/models.md for the figures.
"""

from __future__ import annotations

import warnings
from typing import Any

MODES = ("none", "int8")


def optimize_for_inference(model: Any, mode: str = "none") -> Any:
    """Return the model prepared for inference with ``mode`` (the same object when mode is "none")."""
    if mode == "none" or model.device.type != "cpu":
        return model
    if mode == "int8":
        import torch

        with warnings.catch_warnings():  # torch.ao prints a migration notice; the API still works
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    from ragtune.errors import ConfigError

    raise ConfigError(f"generator.optimize '{mode}': unknown; use one of {', '.join(MODES)}")
