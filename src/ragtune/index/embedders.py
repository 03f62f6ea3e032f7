"""Embedder protocol (texts → vectors) and its named backends.

PLACEHOLDER: the index helper fills in the backends; the protocol below is the contract.
"""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    name: str  # identifies the model, stored with the index so a mismatch is caught
    dimension: int

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Return a float32 array (len(texts), dimension), rows L2-normalised."""
        ...
