"""The compiled engine: onnxruntime-genai, the default local backend on CPU.

    generate = load_generator("smollm2")          # backend "auto": this engine on CPU when it is installed

Any model spec ragtune accepts is compiled once by the engine's own model builder (a Hugging Face folder in,
an ONNX model out) and cached under ``$RAGTUNE_CACHE/models/onnx``, keyed by the source's content hash, the
weight precision and the engine version; later loads take about a second. A GGUF file goes through the
dequantised safetensors cache first; a fine-tuned adapter is merged into its base by peft, then compiled
(cached by the adapter's hash). The builder runs in a child process with the hub switched off, on local
folders only, so it never downloads anything.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragtune.atomic import atomic_folder
from ragtune.config import GeneratorSettings
from ragtune.errors import ModelError
from ragtune.models.decoding import LocalGenerator
from ragtune.models.loading import (
    ModelSource,
    cache_root,
    cached_gguf_conversion,
    display_name,
    load_tokenizer,
    resolve_model,
)

ENGINE = "onnxruntime-genai"
_MODULE = "onnxruntime_genai"
# The vocabulary projection only at the last prompt position during prefill (logits elsewhere are never read):
# prefill of an 836-token RAG prompt 1.61 -> 1.28 s, the same 64 greedy tokens (BENCHMARKS.md, 2026-12-02).
BUILDER_OPTIONS = ("prune_lm_head=true",)


def available() -> bool:
    """Whether the engine's package is installed (found, not imported: importing it costs a second)."""
    return importlib.util.find_spec(_MODULE) is not None


def cpu_threads() -> int:
    """The CPUs this process may run on. Passed to the engine explicitly: left to itself, onnxruntime-genai ran
    one thread on a 2-core VM (prefill of an 836-token prompt 2.24 -> 1.17 s, decode 21.8 -> 39.8 tokens/s)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def engine_version() -> str:
    return importlib.metadata.version(ENGINE)


class OrtGenerator(LocalGenerator):
    """A model compiled by onnxruntime-genai; decoding (stops, streamed text) is the shared `LocalGenerator` loop."""

    def __init__(self, folder: Path, tokenizer: Any, *, name: str, max_new_tokens: int = 256,
                 temperature: float = 0.0, repeat_ngram: int = 6, stop: tuple[str, ...] | list[str] = ()) -> None:
        import onnxruntime_genai as og

        self.folder = Path(folder)
        engine_config = og.Config(str(self.folder))
        threads = {"intra_op_num_threads": cpu_threads()}
        engine_config.overlay(json.dumps({"model": {"decoder": {"session_options": threads}}}))
        self.model = og.Model(engine_config)
        config = json.loads((self.folder / "genai_config.json").read_text(encoding="utf-8"))["model"]
        self.context_length = int(config.get("context_length") or 0)
        # Gemma 3's sliding-window layers need a KV cache at least one window long, whatever the reply's length
        self.window = int((config["decoder"].get("sliding_window") or {}).get("window_size") or 0)
        eos = config.get("eos_token_id")
        super().__init__(tokenizer, name=name, max_new_tokens=max_new_tokens, temperature=temperature,
                         eos_ids=eos if isinstance(eos, list) else [eos], repeat_ngram=repeat_ngram, stop=stop)

    def _tokens(self, prompt: list[int], max_new_tokens: int, temperature: float) -> Iterator[int]:
        import numpy as np
        import onnxruntime_genai as og

        length = max(len(prompt) + max_new_tokens, self.window)  # the reply still stops at max_new_tokens
        if self.context_length:  # a prompt over it was refused by LocalGenerator.stream
            length = min(length, self.context_length)
        params = og.GeneratorParams(self.model)
        options: dict[str, Any] = {"max_length": length, "do_sample": temperature > 0}
        if temperature > 0:
            options["temperature"] = temperature
        params.set_search_options(**options)
        generator = og.Generator(self.model, params)
        generator.append_tokens(np.asarray(prompt, dtype=np.int32))
        for _ in range(max_new_tokens):  # max_length may be longer (a sliding window's cache)
            if generator.is_done():
                break
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])


def load_ort_generator(settings: GeneratorSettings) -> OrtGenerator:
    """The compiled engine for ``settings.model`` at ``settings.precision`` (compiling it once if needed)."""
    folder = cached_ort_model(resolve_model(settings.model), settings.precision)
    return OrtGenerator(folder, load_tokenizer(settings.model), name=display_name(settings.model),
                        max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                        repeat_ngram=settings.repeat_ngram, stop=settings.stop)


def cached_ort_model(source: ModelSource, precision: str) -> Path:
    """The compiled model folder for a source at a precision, built once (atomically) if it is not cached."""
    key = _source_key(source)
    options = "|".join(BUILDER_OPTIONS)
    digest = hashlib.sha256(f"{key}|{precision}|{options}|{ENGINE}-{engine_version()}".encode()).hexdigest()[:12]
    target = cache_root() / "onnx" / f"{source.name}-{precision}-{digest}"
    if (target / "genai_config.json").is_file():
        return target
    print(f"Compiling {source.name} for {ENGINE} ({precision}) once; cached in {target}", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}-work-", dir=target.parent) as scratch, \
            atomic_folder(target) as model_dir:
        work = Path(scratch)
        if source.kind == "peft":
            hf_folder = work / "merged"
            _merge_adapter(source, hf_folder)
        else:
            hf_folder = cached_gguf_conversion(source) if source.kind == "gguf" else source.path
        _run_builder(source, hf_folder, model_dir, precision, work / "cache")
    return target


def _run_builder(source: ModelSource, hf_folder: Path, out: Path, precision: str, cache: Path) -> None:
    # The builder's own command line, in a child process: its imports stay out of ours, its memory is freed
    # when it exits, and HF_HUB_OFFLINE makes any attempt to reach a hub fail instead of downloading.
    # ragtune.models.ort_builder is the builder itself with Gemma 3's transformers 5 config made readable.
    command = [sys.executable, "-m", "ragtune.models.ort_builder", "-i", str(hf_folder), "-o", str(out),
               "-p", precision, "-e", "cpu", "-c", str(cache), "--extra_options", *BUILDER_OPTIONS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not (out / "genai_config.json").is_file():
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise ModelError(f"model '{source.path}': {ENGINE} could not compile it ({lines[-1] if lines else 'no output'}); "
                         "set generator.backend = \"transformers\" to run it without the engine")


def _merge_adapter(source: ModelSource, out: Path) -> None:
    """Fold a LoRA adapter into its base with peft and save the result as a plain Hugging Face folder."""
    from ragtune.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(source.path), device="cpu", dtype="float32")
    model = model.merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _source_key(source: ModelSource) -> str:
    """A content key: the GGUF cache folder's name (it holds the file's hash), or a hash of the folder's files."""
    if source.kind == "gguf":
        return cached_gguf_conversion(source).name
    digest = hashlib.sha256()
    if source.kind == "peft":
        digest.update(_source_key(resolve_model(source.base or "")).encode())
    for path in sorted(p for p in source.path.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
