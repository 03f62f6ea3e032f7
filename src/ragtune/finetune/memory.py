"""Training memory: micro-batches cut to a budget of activation memory, checkpointing for what cannot be cut.

A training step keeps every layer's activations for the backward pass: about 1.25 MiB per token for SmolLM2-135M
in fp32 (measured; `kept_bytes_per_token` estimates 1.4 MiB from the model's shape), so eight RAFT prompts of
1,457 tokens kept 16 GB. `split` cuts each micro-batch of ``finetune.batch_size`` examples into pieces whose
estimate fits the budget (``finetune.activation_memory_mb``; unset, a share of the memory actually available, at
most `AUTO_CAP_BYTES`), and the loop runs a backward per piece: gradients add up over the pieces, so the
optimizer step is the same as for the whole micro-batch (the loss is already a sum over answer tokens). A single
example too long for the budget is run with activation checkpointing (each layer's input kept, its insides
recomputed in the backward: 0.18 MiB a token measured, about a third more compute), only for that piece.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragtune.finetune.encode import Encoded

# Unset budget: a quarter of the available memory, at most this. With the ~0.95 GiB a LoRA run of SmolLM2 holds
# anyway (libraries, fp32 weights; 1.2 GiB measured), 512 MiB of activations kept training at 1.8 GiB resident.
AUTO_CAP_BYTES = 512 << 20
AUTO_SHARE = 0.25
# Floats a decoder layer keeps per token for its backward, in units of the hidden size (norm inputs and outputs,
# projections, rotary copies, attention output, residuals) and of the MLP width (gate, up, activation, product).
HIDDEN_FLOATS, MLP_FLOATS = 10, 4
LOGIT_COPIES = 3  # a labelled position's logits: the projection, its fp32 copy, the softmax gradient


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model: its size per token, read once from its config."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    bytes_per_float: int = 4  # activations under bf16 autocast are a mix; fp32 is the safe side

    @classmethod
    def of(cls, model) -> Shape:
        config = getattr(getattr(model, "module", model), "config")
        hidden = int(getattr(config, "hidden_size", 0) or 0)
        return cls(int(getattr(config, "num_hidden_layers", 0) or 0), hidden,
                   int(getattr(config, "intermediate_size", 0) or 4 * hidden), int(getattr(config, "vocab_size", 0) or 0))

    def kept_bytes_per_token(self) -> int:
        """Activation bytes a token keeps for the backward, every layer."""
        return self.layers * (HIDDEN_FLOATS * self.hidden + MLP_FLOATS * self.intermediate) * self.bytes_per_float

    def checkpointed_bytes_per_token(self) -> int:
        """With activation checkpointing: each layer's input, plus one layer's insides while it is recomputed."""
        per_layer = (HIDDEN_FLOATS * self.hidden + MLP_FLOATS * self.intermediate) * self.bytes_per_float
        return self.layers * self.hidden * self.bytes_per_float + per_layer

    def cost(self, part: Sequence[Encoded], checkpointed: bool = False) -> int:
        """Estimated bytes one forward and backward of ``part`` (packed) holds at its peak."""
        if not part:
            return 0
        per_token = self.checkpointed_bytes_per_token() if checkpointed else self.kept_bytes_per_token()
        labelled = sum(e.answer_tokens for e in part)
        return (packed_rows(part) * max(len(e.input_ids) for e in part) * per_token
                + labelled * self.vocab * 4 * LOGIT_COPIES)


@dataclass(frozen=True)
class Piece:
    """Examples run in one forward and backward; ``checkpointed``: with activation checkpointing."""

    examples: list[Encoded]
    checkpointed: bool = False


def budget_bytes(setting_mb: int | None, available: int | None = None) -> int | None:
    """The activation budget in bytes: the setting (0: no limit, None returned), else a share of ``available``
    (psutil's available memory when not given), at most `AUTO_CAP_BYTES`."""
    if setting_mb == 0:
        return None
    if setting_mb is not None:
        return setting_mb << 20
    if available is None:
        import psutil

        available = int(psutil.virtual_memory().available)
    return max(64 << 20, min(AUTO_CAP_BYTES, int(available * AUTO_SHARE)))


def packed_rows(part: Sequence[Encoded]) -> int:
    """Rows first-fit-decreasing packing makes of ``part`` (each as wide as its longest example), as `pack` does."""
    width = max(len(e.input_ids) for e in part)
    room: list[int] = []
    for n in sorted((len(e.input_ids) for e in part), reverse=True):
        free = next((r for r, left in enumerate(room) if left >= n), None)
        if free is None:
            room.append(width - n)
        else:
            room[free] -= n
    return len(room)


def split(part: Sequence[Encoded], shape: Shape, budget: int | None) -> list[Piece]:
    """``part`` in pieces that each fit ``budget`` (None: one piece), longest examples first so each piece packs
    tightly; an example that does not fit alone is a piece of its own, checkpointed."""
    if budget is None or not part or shape.cost(part) <= budget:
        return [Piece(list(part))] if part else []
    pieces: list[Piece] = []
    current: list[Encoded] = []
    for e in sorted(part, key=lambda e: -len(e.input_ids)):
        if current and shape.cost(current + [e]) > budget:
            pieces.append(Piece(current))
            current = []
        current.append(e)
        if shape.cost(current) > budget:  # alone and still too big: recompute its layers in the backward
            pieces.append(Piece(current, checkpointed=True))
            current = []
    if current:
        pieces.append(Piece(current))
    return pieces


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD_BYTES = 128 << 10  # glibc's own starting value, kept fixed


def hand_back_large_blocks() -> bool:
    """Have glibc serve blocks of 128 KiB and more straight from the system and return them when freed.

    By default glibc raises that threshold each time such a block is freed, so the activations of one piece are
    later served from its heap, where freed space stays resident: a checkpointed backward, which frees and
    reallocates every layer's insides, held 529 MiB more than its live 88 MiB. A fixed threshold keeps the
    process's resident memory near what is live. Process-wide; False where there is no glibc."""
    import ctypes

    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (AttributeError, OSError):
        return False
