"""The compiled engine (onnxruntime-genai): same greedy tokens as transformers, adapters, the cache, the fallback."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("onnxruntime_genai")

from ragtune.models import ort  # noqa: E402
from ragtune.models.backends import load_generator  # noqa: E402
from ragtune.models.generators import TransformersGenerator  # noqa: E402
from ragtune.models.loading import resolve_model  # noqa: E402

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the valve?"}]
FREE = {"repeat_ngram": 0, "max_new_tokens": 24}  # no stop rule: compare the engines' raw greedy tokens


def _greedy(generator, n: int = 24) -> list[int]:
    return list(generator._tokens(generator.prompt_ids(MESSAGES), n, 0.0))


@pytest.fixture(scope="module")
def engine(tiny_lm_dir):
    return load_generator(str(tiny_lm_dir), backend="onnxruntime-genai", precision="fp32", **FREE)


@pytest.fixture(scope="module")
def reference(tiny_lm_dir):
    return load_generator(str(tiny_lm_dir), backend="transformers", **FREE)


def test_engine_gives_the_same_prompt_and_greedy_tokens_as_transformers(engine, reference):
    assert isinstance(engine, ort.OrtGenerator) and isinstance(reference, TransformersGenerator)
    assert engine.prompt_ids(MESSAGES) == reference.prompt_ids(MESSAGES)  # one chat template, same ids
    tokens = _greedy(engine)
    assert len(tokens) == 24 and tokens == _greedy(reference)
    assert engine(MESSAGES) == reference(MESSAGES)
    assert engine.count_tokens("warranty claims") == reference.count_tokens("warranty claims")


def test_engine_stream_joined_is_the_whole_reply(engine):
    pieces = list(engine.stream(MESSAGES))
    assert len(pieces) > 1 and "".join(pieces) == engine(MESSAGES)
    assert engine.last_stats["prompt_tokens"] == len(engine.prompt_ids(MESSAGES))
    assert engine.last_stats["new_tokens"] == 24 and engine.last_stats["stop"] == "length"


def test_engine_samples_when_asked(engine):
    greedy = engine(MESSAGES, max_new_tokens=6)
    assert {engine(MESSAGES, temperature=1.0, max_new_tokens=6) for _ in range(3)} - {greedy}


def test_adapter_is_merged_and_compiled_with_the_same_tokens_as_peft(tiny_lm_dir, tmp_path, engine):
    peft = pytest.importorskip("peft")
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    config = peft.LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"],
                             init_lora_weights=False)
    peft.get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    tuned = load_generator(str(tmp_path / "adapter"), backend="onnxruntime-genai", precision="fp32", **FREE)
    tuned_ref = load_generator(str(tmp_path / "adapter"), backend="transformers", **FREE)
    assert _greedy(tuned) == _greedy(tuned_ref) != _greedy(engine)  # the adapter is applied, as peft applies it
    assert "adapter" in tuned.folder.name and tuned.folder != engine.folder


def test_compiled_model_is_cached_by_content_and_precision(tiny_lm_dir, engine, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the builder ran although the model is cached")

    monkeypatch.setattr(ort, "_run_builder", no_build)
    source = resolve_model(str(tiny_lm_dir))
    assert ort.cached_ort_model(source, "fp32") == engine.folder
    genai = json.loads((engine.folder / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["num_hidden_layers"] == 2
    with pytest.raises(AssertionError, match="builder ran"):
        ort.cached_ort_model(source, "int4")  # another precision is another build


def test_builder_failure_is_one_line_model_error_and_leaves_nothing(tiny_lm_dir, tmp_path, monkeypatch):
    import subprocess

    from ragtune.errors import ModelError

    seen = {}

    def failing_builder(command, env, **kwargs):
        seen.update(command=command, env=env)
        return subprocess.CompletedProcess(command, 1, "", "Traceback ...\nNotImplementedError: not supported\n")

    monkeypatch.setenv("RAGTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(ort.subprocess, "run", failing_builder)
    with pytest.raises(ModelError) as info:
        ort.cached_ort_model(resolve_model(str(tiny_lm_dir)), "fp32")
    assert "\n" not in str(info.value) and "NotImplementedError: not supported" in str(info.value)
    assert not list((tmp_path / "cache" / "models" / "onnx").iterdir())  # nothing half-built is left
    # the builder is the engine's own command line (behind ragtune's Gemma 3 config fix), on the local folder,
    # with the hub switched off
    assert seen["command"][1:3] == ["-m", "ragtune.models.ort_builder"] and str(tiny_lm_dir.resolve()) in seen["command"]
    assert seen["env"]["HF_HUB_OFFLINE"] == "1"


def test_missing_engine_falls_back_to_transformers_with_one_warning(tiny_lm_dir, monkeypatch, caplog):
    monkeypatch.setattr(ort, "available", lambda: False)
    with caplog.at_level(logging.WARNING):
        generator = load_generator(str(tiny_lm_dir), max_new_tokens=3)
    assert isinstance(generator, TransformersGenerator)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "onnxruntime-genai is not installed" in warnings[0] and "\n" not in warnings[0]


def test_auto_backend_is_the_engine_on_cpu_and_transformers_elsewhere(tiny_lm_dir, engine, monkeypatch):
    from ragtune.models import backends

    assert set(backends.BACKENDS) == {"auto", "onnxruntime-genai", "transformers", "openai"}
    default = load_generator(str(tiny_lm_dir))  # defaults: auto backend, fp32
    assert isinstance(default, ort.OrtGenerator) and default.folder == engine.folder
    monkeypatch.setattr(backends, "resolve_device", lambda device: "cuda")
    monkeypatch.setattr(backends, "transformers_model", lambda settings: f"transformers:{settings.model}")
    assert load_generator(str(tiny_lm_dir)) == f"transformers:{tiny_lm_dir}"  # not the engine off the CPU


@pytest.mark.integration
def test_packaged_model_default_path_gives_the_reference_greedy_answer():
    """smollm2 on the default path (engine, fp32) against transformers fp32 on a RAG prompt from the sample KB."""
    from ragtune.cli.ask import DEMO_QUESTIONS, SAMPLE_KB
    from ragtune.models.prompts import rag_messages
    from ragtune.types import Hit

    messages = rag_messages(DEMO_QUESTIONS[0], [Hit((SAMPLE_KB / "warranty.txt").read_text(), "warranty.txt", 1.0)])
    fast = load_generator("smollm2", max_new_tokens=32)
    slow = load_generator("smollm2", backend="transformers", max_new_tokens=32)
    assert isinstance(fast, ort.OrtGenerator) and fast.folder.name.startswith("smollm2-fp32-")
    answer = fast(messages)
    assert answer == slow(messages) and "30 months" in answer


def test_auto_backend_falls_back_when_the_engine_cannot_compile_a_model(tiny_lm_dir, monkeypatch, caplog):
    from ragtune.errors import ModelError

    def fail(*args, **kwargs):
        raise ModelError("model 'x': onnxruntime-genai could not compile it (NotImplementedError)")

    monkeypatch.setattr(ort, "load_ort_generator", fail)
    with caplog.at_level(logging.WARNING):
        generator = load_generator(str(tiny_lm_dir), max_new_tokens=3)
    assert isinstance(generator, TransformersGenerator)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING][0].endswith("instead")
    with pytest.raises(ModelError, match="could not compile"):  # asked for by name: the error stands
        load_generator(str(tiny_lm_dir), backend="onnxruntime-genai")


def test_engine_runs_on_every_cpu_this_process_may_use(engine, monkeypatch):
    # left to itself the engine ran one thread on a 2-core VM (half the speed); the count is passed explicitly
    import os

    import onnxruntime_genai as og

    assert ort.cpu_threads() == len(os.sched_getaffinity(0))
    overlays: list[dict] = []

    class Recording(og.Config):
        def overlay(self, text: str) -> None:
            overlays.append(json.loads(text))
            super().overlay(text)

    monkeypatch.setattr(og, "Config", Recording)
    monkeypatch.setattr(ort, "cpu_threads", lambda: 1)
    one = ort.OrtGenerator(engine.folder, engine.tokenizer, name="tiny", **FREE)
    assert overlays == [{"model": {"decoder": {"session_options": {"intra_op_num_threads": 1}}}}]
    assert _greedy(one) == _greedy(engine)  # one thread or several: the same greedy tokens


def test_gemma3_rope_per_layer_type_is_flattened_for_the_builder():
    from transformers import Gemma3TextConfig

    from ragtune.models.ort_builder import flatten_rope

    config = Gemma3TextConfig(num_hidden_layers=2, layer_types=["sliding_attention", "full_attention"])
    assert "rope_type" not in config.rope_parameters  # transformers 5's layout: the builder's KeyError
    full, local = (config.rope_parameters[k]["rope_theta"] for k in ("full_attention", "sliding_attention"))
    flatten_rope(config)
    assert config.rope_theta == full and config.rope_local_base_freq == local and full != local
    assert config.rope_parameters["rope_type"] == "default"


def test_gemma3_compiles_on_the_engine_with_the_same_greedy_tokens(tiny_gemma_dir):
    engine = load_generator(str(tiny_gemma_dir), backend="onnxruntime-genai", precision="fp32", **FREE)
    reference = load_generator(str(tiny_gemma_dir), backend="transformers", **FREE)
    assert isinstance(engine, ort.OrtGenerator)
    assert engine.prompt_ids(MESSAGES) == reference.prompt_ids(MESSAGES)
    assert _greedy(engine) == _greedy(reference)  # both RoPE thetas and the sliding window came through
