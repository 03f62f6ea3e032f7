"""Shared by the export tests: a LoRA adapter folder made in code, as peft writes it."""

from __future__ import annotations

from pathlib import Path


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter folder as peft writes it, with non-zero weights (so merging changes the answers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    return out
