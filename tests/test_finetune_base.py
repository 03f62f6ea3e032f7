"""finetune/base.py: preparing a model for LoRA prints nothing about peft's own use of transformers."""

from __future__ import annotations

import warnings

import torch


def test_lora_prepare_raises_no_deprecation_warning_from_peft(tiny_lm_dir):
    from transformers import AutoModelForCausalLM

    from ragtune.finetune import base

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lora = base.prepare(model, "lora", 4, 8, 0.0, None)
    assert any(p.requires_grad for p in lora.parameters())  # the adapters are there and train
    assert not any("is_gradient_checkpointing" in str(w.message) for w in caught), [str(w.message) for w in caught]
