"""Packed micro-batches: the same loss as scoring each example on its own, with little padding."""

from __future__ import annotations

import pytest
import torch

from ragtune.finetune.batches import global_batch, pack, token_loss_sum
from ragtune.finetune.encode import IGNORE, Encoded


def _examples() -> list[Encoded]:
    g = torch.Generator().manual_seed(0)
    out = []
    for n, prompt in ((12, 7), (5, 2), (9, 6), (4, 1), (7, 3)):
        ids = torch.randint(5, 1000, (n,), generator=g).tolist()
        out.append(Encoded(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def test_pack_fills_rows_without_splitting_an_example():
    examples = _examples()
    batch = pack(examples, pad_id=0, device="cpu")
    assert batch.ids.shape[1] == 12  # the longest example's width
    assert batch.ids.shape[0] == 4  # 37 tokens in rows of 12: first-fit-decreasing needs 4 rows (padded: 5)
    # every example appears whole, with positions 0..n-1, and only its answer tokens are targets
    assert int((batch.targets != IGNORE).sum()) == sum(e.answer_tokens for e in examples)
    starts = (batch.positions == 0).sum().item()
    assert starts >= len(examples)


def test_packed_loss_equals_the_loss_of_each_example_alone(tiny_lm_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32).eval()
    examples = _examples()
    with torch.no_grad():
        packed = token_loss_sum(model, examples, pad_id=0, device="cpu")
        alone = 0.0
        for e in examples:
            logits = model(input_ids=torch.tensor([e.input_ids])).logits[0, :-1]
            alone += torch.nn.functional.cross_entropy(logits, torch.tensor(e.labels[1:]), ignore_index=IGNORE,
                                                       reduction="sum").item()
    assert packed.item() == pytest.approx(alone, rel=1e-5)


def test_global_batches_cover_each_epoch_once():
    seen = [i for step in range(5) for i in global_batch(20, step, 5, 4, seed=3)]
    assert sorted(seen) == list(range(20))
    assert global_batch(20, 5, 5, 4, seed=3) != global_batch(20, 0, 5, 4, seed=3)  # a new shuffle per epoch


def test_plain_attention_while_the_scores_fit_the_budget_and_sdpa_beyond(tiny_lm_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    from ragtune.finetune import batches

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32, attn_implementation="sdpa")
    examples = _examples()
    used = []
    original = model.set_attn_implementation
    monkeypatch.setattr(model, "set_attn_implementation", lambda name: (used.append(name), original(name)))
    with torch.no_grad():
        eager = token_loss_sum(model, examples, pad_id=0, device="cpu")  # tiny scores fit: eager, then back
    assert used == ["eager", "sdpa"] and model.config._attn_implementation == "sdpa"
    monkeypatch.setattr(batches, "EAGER_ATTENTION_BYTES", 0)  # nothing fits: SDPA, no switch at all
    with torch.no_grad():
        sdpa = token_loss_sum(model, examples, pad_id=0, device="cpu")
    assert used == ["eager", "sdpa"]
    assert eager.item() == pytest.approx(sdpa.item(), rel=1e-5)  # the same loss either way


def test_the_budget_counts_every_layer_only_when_the_backward_keeps_the_scores(tiny_lm_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    from ragtune.finetune.batches import BYTES_PER_SCORE, choose_attention

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32, attn_implementation="sdpa")
    heads, layers = model.config.num_attention_heads, model.config.num_hidden_layers
    assert layers > 1
    one_layer = 4 * 64 * 64 * heads * BYTES_PER_SCORE
    monkeypatch.setattr("ragtune.finetune.batches.EAGER_ATTENTION_BYTES", one_layer)
    assert choose_attention(model, 4, 64, "cpu") == "sdpa"  # training: all layers' scores are kept
    with torch.no_grad():
        assert choose_attention(model, 4, 64, "cpu") == "eager"  # evaluation: one layer's at a time
    assert choose_attention(model, 4, 64, "cuda") is None  # other devices keep their own kernels
