"""A value written in ragtune.toml (or given with --set) reaches the code of every command: CLI defaults never win.

Each test writes a ragtune.toml in the working folder, runs the command through the real CLI, and captures what
the product function it calls received (the function itself is replaced, so no model runs).
"""

from __future__ import annotations

import importlib
import json

import pytest
from typer.testing import CliRunner

from ragtune.cli.main import _register, app

_register()


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for key in list(__import__("os").environ):
        if key.startswith("RAGTUNE_"):
            monkeypatch.delenv(key)
    return tmp_path


def _toml(folder, text):
    (folder / "ragtune.toml").write_text(text)


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_finetune_takes_model_and_method_from_toml(cwd, monkeypatch):
    _toml(cwd, '[generator]\nmodel = "my-model"\n[finetune]\nmethod = "full"\nepochs = 7\n')
    (cwd / "d.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    seen = {}

    class Capture:
        def __init__(self, model, method=None, settings=None, device="cpu", **overrides):
            seen.update(model=model, method=method, epochs=settings.epochs, overrides=overrides)

        def fit(self, *a, **kw):
            raise SystemExit(0)

    monkeypatch.setattr(importlib.import_module("ragtune.finetune.train"), "FineTuner", Capture)
    _invoke("finetune", cwd / "d.jsonl")
    assert seen == {"model": "my-model", "method": "full", "epochs": 7.0, "overrides": {}}
    _invoke("finetune", cwd / "d.jsonl", "--method", "lora", "--epochs", "2")  # a flag given wins
    assert seen["method"] == "lora" and seen["overrides"] == {"epochs": 2.0}


def test_eval_set_reaches_the_run_and_results(cwd, monkeypatch):
    _toml(cwd, "[retrieval]\nk = 9\n")
    (cwd / "qa.jsonl").write_text('{"question": "q?", "answers": ["yes"]}\n')
    seen = {}

    def capture(qa, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(importlib.import_module("ragtune.evaluate.runner"), "evaluate", capture)
    _invoke("eval", cwd / "qa.jsonl", "--set", "generator.max_new_tokens=4", "--set", "rag.context_sentences=2")
    s = seen["settings"]
    assert (s.generator.max_new_tokens, s.retrieval.k, s.rag.context_sentences) == (4, 9, 2)
    _invoke("eval", cwd / "qa.jsonl", "--set", "retrieval.k=2", "-k", "3")  # the flag wins over --set
    assert seen["settings"].retrieval.k == 3


def test_ask_takes_k_and_model_from_toml(cwd, monkeypatch):
    _toml(cwd, '[retrieval]\nk = 4\n[generator]\nmodel = "toml-model"\nmax_new_tokens = 11\n')
    seen = {}

    class Capture:
        def __init__(self, retriever=None, generator=None, settings=None, **kw):
            seen["settings"] = settings
            self.settings = settings

        def ask(self, question, k=None, **kw):
            raise SystemExit(0)

    monkeypatch.setattr("ragtune.rag.RAG", Capture)
    _invoke("ask", "hello?", "--json")
    s = seen["settings"]
    assert (s.retrieval.k, s.generator.model, s.generator.max_new_tokens) == (4, "toml-model", 11)


def test_synth_chunks_with_the_configured_size(cwd, monkeypatch):
    _toml(cwd, "[chunking]\nchunk_tokens = 40\n")
    docs = cwd / "docs"
    docs.mkdir()
    sentence = "The Quillfeather Q7 stores forty thousand pages of notes in its internal memory module. "
    (docs / "a.txt").write_text(sentence * 20)
    seen = {}
    synth = importlib.import_module("ragtune.finetune.synth")
    monkeypatch.setattr(synth, "synthesize", lambda chunks, **kw: seen.setdefault("chunks", chunks))
    monkeypatch.setattr(synth, "write_pairs", lambda pairs, out: None)
    result = _invoke("synth", docs, "--out", cwd / "qa.jsonl")
    assert result.exit_code == 0, result.output
    assert len(seen["chunks"]) >= 8  # 20 sentences of ~17 tokens in 40-token chunks; 256 would give 2


def test_config_prints_what_the_toml_says(cwd):
    _toml(cwd, "[retrieval]\ndense_weight = 0.7\n")
    result = _invoke("config", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["retrieval"]["dense_weight"] == 0.7
