"""A GGUF file (llama.cpp, Ollama, LM Studio) from a merged model, written with the `gguf` library.

As llama.cpp's ``convert_hf_to_gguf.py`` does for the llama architecture: tensors renamed with
``gguf.get_tensor_name_map``, the query and key projections permuted back to the rotary layout GGML expects,
1-D tensors (norms) kept in f32, the rest f16 (default), q8_0 (``gguf.quants``) or f32, and a byte-level BPE
tokenizer (SmolLM2's, GPT-2's) with its merges, special tokens and chat template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.errors import ModelError

ARCHITECTURES = {"LlamaForCausalLM": "llama"}  # transformers architecture -> GGUF architecture
OUTTYPES = ("f16", "q8_0", "f32")


def write_gguf(model: Any, tokenizer: Any, path: Path, outtype: str = "f16", name: str = "model") -> Path:
    """Write ``model`` (a merged transformers model) and ``tokenizer`` to the GGUF file ``path``."""
    import gguf

    arch = architecture(model)
    if outtype not in OUTTYPES:
        raise ModelError(f"--outtype {outtype}: unknown; choose from {', '.join(OUTTYPES)}")
    c = model.config
    n_head, n_kv = c.num_attention_heads, getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    rope = getattr(c, "rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        raise ModelError(f"rope scaling {rope.get('rope_type')}: the GGUF writer "
                         "knows plain rotary embeddings only; export --format hf and convert it with llama.cpp")
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_kv)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(float(rope.get("rope_theta") or getattr(c, "rope_theta", None) or 10000.0))
    writer.add_rope_dimension_count(getattr(c, "head_dim", None) or c.hidden_size // n_head)
    writer.add_vocab_size(c.vocab_size)
    writer.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
                          "f32": gguf.LlamaFileType.ALL_F32}[outtype])
    _add_tokenizer(writer, tokenizer, c.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, c.num_hidden_layers)
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq") or (hf_name == "lm_head.weight" and c.tie_word_embeddings):
            continue  # tied: readers use token_embd (transformers ties when output.weight is absent)
        data = tensor.detach().float().cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, n_head, n_head)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, n_head, n_kv)
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ModelError(f"tensor {hf_name}: no GGUF name for it in the {arch} layout; export --format hf")
        _add_tensor(writer, gguf, gguf_name, data, outtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def architecture(model: Any) -> str:
    """The GGUF architecture of a transformers model, or one line saying it is not known here."""
    names = getattr(model.config, "architectures", None) or [type(model).__name__]
    if names[0] not in ARCHITECTURES:
        raise ModelError(f"architecture {names[0]}: the GGUF writer knows {', '.join(ARCHITECTURES)} only; export "
                         "--format hf and convert that folder with llama.cpp's convert_hf_to_gguf.py")
    return ARCHITECTURES[names[0]]


def _permute(weights: Any, n_head: int, n_kv: int) -> Any:
    """HF's rotary layout (halves) back to GGML's (interleaved pairs), per head, as convert_hf_to_gguf does."""
    heads = n_kv if n_kv != n_head else n_head
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _add_tensor(writer: Any, gguf: Any, name: str, data: Any, outtype: str) -> None:
    import numpy as np

    if data.ndim <= 1 or outtype == "f32":
        writer.add_tensor(name, data.astype(np.float32))
    elif outtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        q = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:  # f16, and q8_0 rows that do not split into its blocks of 32 (as llama.cpp falls back)
        writer.add_tensor(name, data.astype(np.float16))


def _add_tokenizer(writer: Any, tokenizer: Any, vocab_size: int) -> None:
    """A byte-level BPE vocabulary as llama.cpp's "gpt2" tokenizer model: tokens by id, their types, merges."""
    import gguf

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    model = backend.get("model", {})
    if model.get("type") != "BPE" or "ByteLevel" not in json.dumps(backend.get("decoder")):
        raise ModelError(f"tokenizer {model.get('type')}: the GGUF writer takes byte-level BPE tokenizers only "
                         "(SmolLM2, GPT-2, Llama 3 style); export --format hf and convert it with llama.cpp")
    vocab = tokenizer.get_vocab()
    special = set(tokenizer.all_special_ids)
    added = {t["id"]: t for t in backend.get("added_tokens", [])}
    tokens, types = [f"[PAD{i}]" for i in range(vocab_size)], [gguf.TokenType.UNUSED] * vocab_size
    for token, i in vocab.items():
        if i < vocab_size:
            tokens[i] = token
            types[i] = (gguf.TokenType.CONTROL if i in special or added.get(i, {}).get("special")
                        else gguf.TokenType.USER_DEFINED if i in added else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("gpt2")
    # llama.cpp's name for a digit-by-digit pre-tokenizer in front of GPT-2's (SmolLM's); else GPT-2's own
    digits = '"individual_digits": true' in json.dumps(backend.get("pre_tokenizer"))
    writer.add_tokenizer_pre("smollm" if digits else "gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])])
    for key, add in (("bos_token_id", writer.add_bos_token_id), ("eos_token_id", writer.add_eos_token_id),
                     ("pad_token_id", writer.add_pad_token_id), ("unk_token_id", writer.add_unk_token_id)):
        value = getattr(tokenizer, key, None)
        if value is not None:
            add(value)
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)
