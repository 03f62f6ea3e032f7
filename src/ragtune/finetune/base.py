"""The model being tuned: load it through ragtune's resolver, wrap it for LoRA or full tuning, save the result.

The saved folder is what `ragtune ask --model DIR` loads: for LoRA, ``adapter_config.json`` (its
``base_model_name_or_path`` is the spec the run started from: an alias or an absolute path) with
``adapter_model.safetensors``; for full tuning, a plain Hugging Face model folder. Both carry the
tokenizer with the chat template used in training.
"""

from __future__ import annotations

import json
from pathlib import Path

from ragtune.atomic import atomic_write_json
from ragtune.errors import ModelError
from ragtune.models.loading import quiet_peft

# Linear layers worth adapting, per architecture (attention and MLP projections); others use "all-linear".
LORA_TARGETS: dict[str, list[str]] = {
    **{t: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
       for t in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text",
                 "olmo", "olmo2", "granite", "smollm3", "phi3")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
    "bloom": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
}


def resolve_spec(spec: str) -> str:
    """The string recorded as the base model: an alias as given, a path made absolute."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def load_base(spec: str, device: str = "cpu"):
    """(model, tokenizer) for an alias, HF folder, .gguf or adapter folder, in fp32 for CPU training."""
    from ragtune.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(spec, device=device, dtype="float32")
    if hasattr(model, "peft_config"):  # a fine-tuned adapter as the start: train on its merged weights
        model = model.merge_and_unload()
    model.to(device)
    _drop_quantizer(model)
    return model, tokenizer


def load_tokenizer(spec: str):
    """Only the tokenizer of a model spec (for counting tokens), without loading the weights."""
    from ragtune.models.loading import load_tokenizer as load

    return load(spec)


def _drop_quantizer(model) -> None:
    # A GGUF load is dequantised to plain tensors, but keeps a quantizer that blocks saving.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")


def lora_targets(model, configured: list[str] | None) -> list[str] | str:
    if configured:
        return configured
    return LORA_TARGETS.get(getattr(model.config, "model_type", ""), "all-linear")


def prepare(model, method: str, r: int, alpha: int, dropout: float, targets: list[str] | None):
    """LoRA: freeze the base and add adapters. Full: every weight trains."""
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ModelError("LoRA needs peft; pip install 'ragtune[finetune]' (or use --method full)") from None

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_targets(model, targets),
                        task_type="CAUSAL_LM", bias="none")
    with quiet_peft():
        return get_peft_model(model, config)


def save_model(model, tokenizer, out: Path, base_spec: str, method: str) -> None:
    """Write the adapter (LoRA) or the whole model (full) plus the tokenizer into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    if method == "lora":
        cfg_path = out / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = _base_name(base_spec, out)
        _write_json(cfg_path, cfg)


def _base_name(base_spec: str, out: Path) -> str:
    """What the loader resolves: an alias or an absolute path; an adapter trained on a sibling adapter folder (RAFT
    from the fine-tuned model in one `choose` folder) names it relative, so the two move together."""
    base = Path(base_spec)
    if base.is_absolute() and (base / "adapter_config.json").is_file() and base.parent == out.resolve().parent:
        return f"../{base.name}"
    return base_spec


def save_merged(peft_model, tokenizer, out: Path) -> None:
    """The adapter folded into the base weights: a plain HF folder (call last; it changes the model)."""
    merged = peft_model.merge_and_unload()
    _drop_quantizer(merged)
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def _write_json(path: Path, data: dict) -> None:
    atomic_write_json(path, data)
