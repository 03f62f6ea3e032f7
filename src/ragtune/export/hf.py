"""A merged Hugging Face folder: the contestant's model with its LoRA adapter folded in (peft
``merge_and_unload``), as safetensors, with the tokenizer, its chat template and a greedy generation config, so
plain `transformers` (and vLLM, TGI, llama.cpp's converter) load it without peft or ragtune."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragtune.config import Settings


def write_hf(model_spec: str, out: Path, settings: Settings) -> tuple[Any, Any]:
    """Load ``model_spec`` (an alias, folder, .gguf or adapter) as ragtune does, merge any adapter, save to ``out``.
    Returns the merged model and its tokenizer (the GGUF writer reads them next)."""
    from transformers import GenerationConfig

    from ragtune.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_spec, device="cpu", dtype="fp32")
    while hasattr(model, "merge_and_unload"):  # an adapter, possibly over another (RAFT from the fine-tuned one)
        model = model.merge_and_unload()
    model.config._name_or_path = out.name  # not the temporary folder's path
    g = settings.generator
    model.generation_config = GenerationConfig(
        do_sample=False, max_new_tokens=g.max_new_tokens, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=getattr(model.config, "bos_token_id", None))
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)  # the chat template goes with it (chat_template.jinja / tokenizer_config.json)
    return model, tokenizer
