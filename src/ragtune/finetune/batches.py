"""Batches and their loss: the seeded example order, packing without padding, logits only where loss is.

A micro-batch is packed first-fit-decreasing into rows as wide as its longest example: examples are laid end
to end with positions restarting at 0, and transformers turns restarting positions (with no attention mask)
into a block-diagonal causal mask, so packed examples never see each other and almost no padding is computed.
The vocabulary projection (49k words for SmolLM2: a large share of a small model's compute) is applied only
at positions whose next token carries a label (``logits_to_keep`` as a mask); prompt positions are skipped.
On CPU, attention is the plain kind while its kept scores fit a memory budget (`choose_attention`). Each
micro-batch is run in pieces that fit the activation budget (`ragtune.finetune.memory`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from ragtune.finetune.encode import IGNORE, Encoded
from ragtune.finetune.memory import Piece, Shape, split

# Plain attention (two matrix products and a softmax) ran faster on CPU than SDPA's kernels at every packed width
# measured: steps of 8 examples 1.51 vs 1.98 s at 20-128 tokens, 2.79 vs 3.11 s at 64-256, 7.24 vs 8.54 s at
# 150-500 (BENCHMARKS.md). But its backward keeps every layer's rows x heads x width^2 scores (+5.3 GB at
# 150-500 tokens, about 13 bytes a score), so it is used only while they stay within this budget; SDPA's
# kernels keep none.
EAGER_ATTENTION_BYTES = 2 << 30
BYTES_PER_SCORE = 13


@dataclass
class Packed:
    """One micro-batch as rows of token ids, per-example positions and next-token targets (IGNORE: no loss)."""

    ids: torch.Tensor  # (rows, width)
    positions: torch.Tensor  # (rows, width), restarting at 0 at each example (and at the padding tail)
    targets: torch.Tensor  # (rows, width): the token each position must predict, or IGNORE


def pack(part: list[Encoded], pad_id: int, device: torch.device | str) -> Packed:
    """First-fit-decreasing packing of ``part`` into rows of its longest example's width."""
    width = max(len(e.input_ids) for e in part)
    rows: list[list[Encoded]] = []
    room: list[int] = []
    for e in sorted(part, key=lambda e: -len(e.input_ids)):
        free = next((r for r, left in enumerate(room) if left >= len(e.input_ids)), None)
        if free is None:
            rows.append([])
            room.append(width)
            free = len(rows) - 1
        rows[free].append(e)
        room[free] -= len(e.input_ids)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    targets = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for r, row in enumerate(rows):
        col = 0
        for e in row:
            n = len(e.input_ids)
            ids[r, col:col + n] = torch.tensor(e.input_ids)
            positions[r, col:col + n] = torch.arange(n)
            targets[r, col:col + n - 1] = torch.tensor(e.labels[1:])
            col += n
        positions[r, col:] = torch.arange(width - col)  # the padding tail: a separate, loss-free "example"
    return Packed(ids.to(device), positions.to(device), targets.to(device))


@contextmanager
def piece_loss(model, part: list[Encoded], pad_id: int, device, bf16: bool = False,
               score_budget: int | None = None) -> Iterator[torch.Tensor]:
    """Summed cross-entropy over the labelled (answer) tokens of a micro-batch (0 for an empty one), with the
    model under `choose_attention`'s implementation until the block ends. The backward belongs inside the block:
    activation checkpointing recomputes the forward during the backward, and a recomputation under the model's
    own attention (put back on leaving) saves other tensors than the forward did (torch's CheckpointError).
    ``score_budget``: bytes plain attention's kept scores may take (None: `EAGER_ATTENTION_BYTES`)."""
    if not part:
        yield sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)  # keeps DDP in step
        return
    batch = pack(part, pad_id, device)
    rows, width = batch.ids.shape
    keep = batch.targets != IGNORE
    with attention(model, rows, width, device, score_budget):
        with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            # no attention mask and no cache: transformers then reads the restarting positions as packed examples
            logits = model(input_ids=batch.ids, position_ids=batch.positions, logits_to_keep=keep,
                           use_cache=False).logits
        yield torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), batch.targets[keep],
                                                reduction="sum")


def token_loss_sum(model, part: list[Encoded], pad_id: int, device, bf16: bool = False,
                   score_budget: int | None = None) -> torch.Tensor:
    """`piece_loss` for a forward pass alone (evaluation): the summed answer-token loss of a micro-batch."""
    with piece_loss(model, part, pad_id, device, bf16, score_budget) as total:
        return total


def choose_attention(model, rows: int, width: int, device, score_budget: int | None = None) -> str | None:
    """The attention a micro-batch runs: "eager" on CPU while its kept scores fit `EAGER_ATTENTION_BYTES`, else
    "sdpa"; None (leave the model as it is) off CPU or for a model set to neither of these two."""
    inner = getattr(model, "module", model)  # DDP wraps the model
    config = getattr(inner, "config", None)
    if torch.device(device).type != "cpu" or getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return None
    heads = getattr(config, "num_attention_heads", None) or 0
    layers = (getattr(config, "num_hidden_layers", None) or 0) if torch.is_grad_enabled() else 1  # kept or not
    budget = EAGER_ATTENTION_BYTES if score_budget is None else min(score_budget, EAGER_ATTENTION_BYTES)
    fits = 0 < rows * width * width * heads * layers * BYTES_PER_SCORE <= budget
    return "eager" if fits or not getattr(inner, "_supports_sdpa", False) else "sdpa"


@contextmanager
def attention(model, rows: int, width: int, device, score_budget: int | None = None) -> Iterator[None]:
    """The forward pass of one micro-batch under `choose_attention`'s implementation; the model's own is put
    back afterwards (a switch costs about 2 ms), so a trained model leaves the loop as it came in."""
    inner = getattr(model, "module", model)
    wanted = choose_attention(model, rows, width, device, score_budget)
    current = getattr(getattr(inner, "config", None), "_attn_implementation", None)
    if wanted is None or wanted == current:
        yield
        return
    inner.set_attn_implementation(wanted)
    try:
        yield
    finally:
        inner.set_attn_implementation(current)


def global_batch(n: int, step: int, steps_per_epoch: int, size: int, seed: int) -> list[int]:
    """Example indices of one optimizer step: a seeded shuffle per epoch, wrapping so every batch is full."""
    epoch, pos = divmod(step, steps_per_epoch)
    order = list(range(n))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [order[(pos * size + j) % n] for j in range(size)]


def accumulate_gradients(model, accelerator, chunk: list[Encoded], micro: int, accumulation: int, n_answer: int,
                         pad_id: int, bf16: bool, budget: int | None = None) -> float:
    """Backward over this process's micro-batches of one global batch, each in pieces that fit ``budget`` bytes
    of activations (None: whole); returns the batch's summed answer-token loss."""
    world = accelerator.num_processes
    shape = Shape.of(model)
    loss_sum = 0.0
    for a in range(accumulation):
        idx = a * world + accelerator.process_index
        pieces = split(chunk[idx * micro:(idx + 1) * micro], shape, budget) or [Piece([])]
        for p, piece in enumerate(pieces):
            # gradients are all-reduced only on the last backward of the global batch
            last = a == accumulation - 1 and p == len(pieces) - 1
            with (nullcontext() if last else accelerator.no_sync(model)), checkpointing(model, piece.checkpointed), \
                    piece_loss(model, piece.examples, pad_id, accelerator.device, bf16,
                               _score_room(shape, piece, budget)) as total:
                # DDP averages gradients over processes: scaling by `world` gives the mean per answer token
                accelerator.backward(total * world / n_answer)
            loss_sum += total.item()
    return loss_sum


@torch.no_grad()
def mean_loss(model, encs: list[Encoded], pad_id: int, accelerator, batch_size: int, bf16: bool,
              budget: int | None = None) -> float:
    """Mean loss per answer token over ``encs``, each process taking every world-th example."""
    model.eval()
    shape = Shape.of(model)
    mine = encs[accelerator.process_index::accelerator.num_processes]
    total = torch.zeros(2, device=accelerator.device)
    for i in range(0, len(mine), batch_size):
        for piece in split(mine[i:i + batch_size], shape, budget):
            total[0] += token_loss_sum(model, piece.examples, pad_id, accelerator.device, bf16,
                                       _score_room(shape, piece, budget))
            total[1] += sum(e.answer_tokens for e in piece.examples)
    total = accelerator.reduce(total, "sum")
    model.train()
    return (total[0] / total[1].clamp(min=1)).item()


def _score_room(shape: Shape, piece: Piece, budget: int | None) -> int | None:
    """What the budget leaves for plain attention's scores once the piece's activations are counted."""
    return None if budget is None else max(0, budget - shape.cost(piece.examples, piece.checkpointed))


@contextmanager
def checkpointing(model, on: bool) -> Iterator[None]:
    """Activation checkpointing for one piece (a model that cannot checkpoint runs as it is); off afterwards."""
    inner = getattr(model, "module", model)
    if not on or not getattr(inner, "supports_gradient_checkpointing", False):
        yield
        return
    # transformers 5 names it "activation"; non-reentrant, so a frozen base with LoRA adapters needs no input grads
    enable = getattr(inner, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        yield
    finally:
        (getattr(inner, "activation_checkpointing_disable", None) or inner.gradient_checkpointing_disable)()
        inner.disable_input_require_grads()  # the hook enabling added on the embeddings
