"""Micro-batches cut to an activation budget: every piece fits, no example is lost, the gradient is the same."""

from __future__ import annotations

import pytest
import torch

from ragtune.finetune.encode import IGNORE, Encoded
from ragtune.finetune.memory import AUTO_CAP_BYTES, Piece, Shape, budget_bytes, packed_rows, split

SHAPE = Shape(layers=2, hidden=64, intermediate=128, vocab=1000)


def _examples(lengths=(40, 7, 25, 12, 33, 5, 18, 9), answer=3) -> list[Encoded]:
    g = torch.Generator().manual_seed(0)
    out = []
    for n in lengths:
        ids = torch.randint(5, 1000, (n,), generator=g).tolist()
        out.append(Encoded(ids, [IGNORE] * (n - answer) + ids[n - answer:]))
    return out


def test_the_budget_is_the_setting_else_a_share_of_what_is_available_at_most_the_cap():
    assert budget_bytes(0) is None  # no limit
    assert budget_bytes(512, available=1 << 30) == 512 << 20  # a setting wins over what is available
    assert budget_bytes(None, available=1 << 30) == (1 << 30) // 4
    assert budget_bytes(None, available=100 << 30) == AUTO_CAP_BYTES
    assert budget_bytes(None) is not None  # read from psutil


def test_packed_rows_match_the_packer():
    from ragtune.finetune.batches import pack

    for lengths in ((40, 7, 25, 12, 33, 5, 18, 9), (10, 10, 10), (3,), (30, 29, 2, 1)):
        part = _examples(lengths, answer=1)
        assert packed_rows(part) == pack(part, 0, "cpu").ids.shape[0]


def test_pieces_fit_the_budget_and_hold_every_example_once():
    part = _examples()
    whole = SHAPE.cost(part)
    for budget in (whole // 2, whole // 3, whole // 6):
        pieces = split(part, SHAPE, budget)
        assert len(pieces) > 1
        assert sorted(id(e) for p in pieces for e in p.examples) == sorted(id(e) for e in part)
        for p in pieces:
            assert SHAPE.cost(p.examples) <= budget or (len(p.examples) == 1 and p.checkpointed)
    assert split(part, SHAPE, whole) == [Piece(part)]  # fits: one piece, as before
    assert split(part, SHAPE, None) == [Piece(part)]  # no limit
    assert split([], SHAPE, 10) == []


def test_an_example_too_long_alone_is_checkpointed_and_only_it():
    part = _examples((200, 10, 12))
    budget = SHAPE.cost(part[1:])  # the two short ones fit together, the long one fits nowhere
    pieces = split(part, SHAPE, budget)
    assert [(len(p.examples), p.checkpointed) for p in pieces] == [(1, True), (2, False)]
    assert SHAPE.checkpointed_bytes_per_token() < SHAPE.kept_bytes_per_token()


def test_the_shape_is_read_from_the_model_config(tiny_lm_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    shape = Shape.of(model)
    assert (shape.layers, shape.hidden, shape.intermediate) == (2, 64, 128)
    assert shape.vocab == model.config.vocab_size


def _lora(tiny_lm_dir):
    from transformers import AutoModelForCausalLM

    from ragtune.finetune import base

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32)
    model = base.prepare(model, "lora", 4, 8, 0.0, None)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # nonzero adapters, so every gradient is nonzero
            torch.nn.init.normal_(p, std=0.02)
    model.train()
    return model


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_pieces_and_checkpointing_give_the_gradient_of_the_whole_batch(tiny_lm_dir, monkeypatch):
    from accelerate import Accelerator

    from ragtune.finetune import batches

    acc = Accelerator(cpu=True)
    part = _examples((60, 7, 25, 12, 33, 5, 18, 9))
    n_answer = sum(e.answer_tokens for e in part)
    model = _lora(tiny_lm_dir)
    whole = batches.accumulate_gradients(model, acc, part, 8, 1, n_answer, 0, False, budget=None)
    expected = _grads(model)
    model.zero_grad(set_to_none=True)

    turned_on = []
    original = batches.checkpointing

    def spy(m, on):
        turned_on.append(on)
        return original(m, on)

    monkeypatch.setattr(batches, "checkpointing", spy)
    shape = Shape.of(model)
    budget = shape.cost(part[:1]) - 1  # the 60-token example fits only checkpointed; the rest in several pieces
    pieced = batches.accumulate_gradients(model, acc, part, 8, 1, n_answer, 0, False, budget=budget)
    assert turned_on.count(True) == 1 and len(turned_on) > 2
    assert pieced == pytest.approx(whole, rel=1e-5)
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)
    layers = model.base_model.model.model.layers
    assert not any(layer.gradient_checkpointing for layer in layers)  # off again after the piece


def test_validation_loss_is_the_same_in_pieces(tiny_lm_dir):
    from accelerate import Accelerator

    from ragtune.finetune.batches import mean_loss

    acc = Accelerator(cpu=True)
    part = _examples()
    model = _lora(tiny_lm_dir)
    whole = mean_loss(model, part, 0, acc, 8, False, budget=None)
    pieced = mean_loss(model, part, 0, acc, 8, False, budget=Shape.of(model).cost(part) // 4)
    assert pieced == pytest.approx(whole, rel=1e-5)


def test_a_checkpointed_piece_recomputes_under_the_attention_its_forward_ran(tiny_lm_dir, monkeypatch):
    """A model set to SDPA whose checkpointed piece runs plain attention: the backward's recomputation must run
    plain attention too (it ran the model's own SDPA once, and torch refused: CheckpointError, RAFT on tfhub)."""
    from accelerate import Accelerator

    from ragtune.finetune import batches

    acc = Accelerator(cpu=True)
    part = _examples((60, 7, 25, 12, 33, 5, 18, 9))
    n_answer = sum(e.answer_tokens for e in part)
    model = _lora(tiny_lm_dir)
    model.base_model.model.set_attn_implementation("sdpa")
    whole = batches.accumulate_gradients(model, acc, part, 8, 1, n_answer, 0, False, budget=None)
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    chosen = []
    monkeypatch.setattr(batches, "choose_attention", lambda *a, **k: chosen.append("eager") or "eager")
    budget = Shape.of(model).cost(part[:1]) - 1  # the 60-token example runs alone, checkpointed
    pieced = batches.accumulate_gradients(model, acc, part, 8, 1, n_answer, 0, False, budget=budget)
    assert len(chosen) > 2 and model.config._attn_implementation == "sdpa"  # put back after each piece
    assert pieced == pytest.approx(whole, rel=1e-5)
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)
