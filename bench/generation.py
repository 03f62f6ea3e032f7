"""Generation speed of the default path (the compiled engine) against plain transformers, on one RAG prompt.

    python bench/generation.py [--tokens 64] [--rounds 3] [--cold]

The prompt is a real RAG prompt of about 840 tokens: the demo's second question with three sample-kb files as
passages (a prompt on which greedy decoding does not stop before 64 tokens). Every variant generates
``--tokens`` new tokens greedily from the same prompt ids; reported: the time to the first token (≈ the
prefill), decode tokens/s after it, and tokens/s over the whole call counting prompt and new tokens, best of
``--rounds`` after a warm-up, all variants interleaved in one process so the machine's load hits them alike.
Baseline: plain ``model.generate`` in float32 with the dynamic KV cache (min_new_tokens = max). The ragtune
variants run the product's engine token stream (``Generator._tokens``, the loop every answer uses) with its
stop rules off, so each generates the full count. "same tokens" counts how many of the baseline's greedy
tokens a variant reproduces before the first difference. Engines not installed here are skipped.
``--cold`` also times the one-off steps (GGUF → safetensors, then the engine's compile) into a temporary cache.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
warnings.simplefilter("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGET = 2.5  # the default path's tokens/s (prompt + new) over the baseline's


def cold_start() -> list[tuple[str, float]]:
    """Seconds of the one-off conversions, into a temporary cache (the real cache is left alone)."""
    from ragtune.config import GeneratorSettings
    from ragtune.models import ort
    from ragtune.models.loading import cached_gguf_conversion, resolve_model

    saved, rows = os.environ.get("RAGTUNE_CACHE"), []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RAGTUNE_CACHE"] = tmp
        start = time.perf_counter()
        cached_gguf_conversion(resolve_model("smollm2"))
        rows.append(("convert GGUF → safetensors cache (first run only)", time.perf_counter() - start))
        precision = GeneratorSettings().precision
        start = time.perf_counter()
        ort.cached_ort_model(resolve_model("smollm2"), precision)
        rows.append((f"compile for {ort.ENGINE} {precision} (first run only)", time.perf_counter() - start))
    os.environ.pop("RAGTUNE_CACHE") if saved is None else os.environ.__setitem__("RAGTUNE_CACHE", saved)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also time the one-off conversions")
    args = parser.parse_args()

    import torch

    from _report import append_section
    from ragtune.cli.ask import DEMO_QUESTIONS, SAMPLE_KB
    from ragtune.config import GeneratorSettings
    from ragtune.models import ort
    from ragtune.models.backends import load_generator
    from ragtune.models.loading import load_model_and_tokenizer
    from ragtune.models.prompts import rag_messages
    from ragtune.types import Hit

    loads = cold_start() if args.cold else []
    off = {"repeat_ngram": 0, "stop": []}  # stop rules off: every variant generates the full count
    start = time.perf_counter()
    default = load_generator(**off)  # the default path, compiled once and cached
    loads.append((f"load the default path from the cache ({type(default).__name__})", time.perf_counter() - start))
    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer("smollm2")
    loads.append(("load transformers fp32 from the cache", time.perf_counter() - start))

    hits = [Hit((SAMPLE_KB / name).read_text(), name, 1.0)
            for name in ("warranty.txt", "product-overview.md", "troubleshooting.md")]
    prompt = default.prompt_ids(rag_messages(DEMO_QUESTIONS[1], hits))
    ids = torch.tensor([prompt])

    def plain() -> tuple[float, list[int], float]:
        with torch.inference_mode():
            start = time.perf_counter()
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
            first = time.perf_counter() - start
            start = time.perf_counter()
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.tokens,
                                 min_new_tokens=args.tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            return first, out[0, len(prompt):].tolist(), time.perf_counter() - start

    def product(generator) -> tuple[float, list[int], float]:
        start = time.perf_counter()
        stream = generator._tokens(prompt, args.tokens, 0.0)
        tokens = [next(stream)]
        first = time.perf_counter() - start
        tokens += list(stream)
        return first, tokens, time.perf_counter() - start

    name = f"ragtune default: {ort.ENGINE} {GeneratorSettings().precision}" if isinstance(default, ort.OrtGenerator) \
        else "ragtune default: transformers"
    variants = {"plain transformers fp32, dynamic cache (baseline)": plain, name: lambda: product(default)}
    variants["ragtune transformers fp32, static cache"] = lambda g=load_generator(backend="transformers", **off): product(g)
    variants["ragtune transformers int8 (generator.optimize)"] = (
        lambda g=load_generator(backend="transformers", optimize="int8", **off): product(g))
    if ort.available():
        for precision in ("fp32", "int8", "int4"):
            if precision != GeneratorSettings().precision or not isinstance(default, ort.OrtGenerator):
                g = load_generator(backend=ort.ENGINE, precision=precision, **off)
                variants[f"{ort.ENGINE} {precision}"] = lambda g=g: product(g)

    for run in variants.values():  # warm-up: first calls allocate caches and pick kernels
        run()
    best: dict[str, tuple[float, list[int], float]] = {}
    load_start = os.getloadavg()[0]
    for _ in range(args.rounds):
        for label, run in variants.items():
            result = run()
            if label not in best or result[2] < best[label][2]:
                best[label] = result
            print(f"{label}: {result[2]:.2f} s", flush=True)

    base_first, base_tokens, base_seconds = best[next(iter(variants))]
    base_rate = (len(prompt) + len(base_tokens)) / base_seconds
    rows = []
    for label, (first, tokens, seconds) in best.items():
        rate = (len(prompt) + len(tokens)) / seconds
        same = next((i for i, (a, b) in enumerate(zip(base_tokens, tokens)) if a != b), min(len(tokens), len(base_tokens)))
        decode = (len(tokens) - 1) / max(seconds - first, 1e-9)
        rows.append(f"| {label} | {first:.2f} | {decode:.1f} | {rate:.0f} | **{rate / base_rate:.2f}x** | "
                    f"{len(tokens) / seconds:.1f} | {same}/{len(base_tokens)} |")
    default_ratio = (len(prompt) + len(best[name][1])) / best[name][2] / base_rate
    load_rows = "\n".join(f"| {label} | {seconds:.1f} s |" for label, seconds in loads)
    skipped = ", ".join(n for n, m in (("CTranslate2", "ctranslate2"), ("OpenVINO GenAI", "openvino_genai"),
                                       ("llama.cpp", "llama_cpp")) if not _installed(m))
    body = f"""
Model: SmolLM2-135M-Instruct (packaged Q4_1 GGUF, dequantised to float32, then compiled for the engine).
Prompt: {len(prompt)} tokens (demo question 2 + three sample-kb files); {args.tokens} new tokens, greedy; best of
{args.rounds} rounds after a warm-up, interleaved. Tokens/s (prompt + new) = (prompt + new tokens) / seconds of the
whole call. Load average (1 min, 2 cores, this run included): {load_start:.1f} at the start,
{os.getloadavg()[0]:.1f} at the end; read the ratios. Not installed here, so not measured: {skipped or 'none'}.

**Default path vs baseline: {default_ratio:.2f}x per token (prompt + new); target {TARGET}x.**

| variant | first token s (≈ prefill) | decode tokens/s | tokens/s (prompt + new) | vs baseline | new tokens/s | same greedy tokens as the baseline |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

| model load | time |
|---|---|
{load_rows}
"""
    append_section("Generation speed: the compiled engine vs transformers (SmolLM2-135M)", body)


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


if __name__ == "__main__":
    main()
