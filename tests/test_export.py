"""`ragtune export`: a merged HF folder that plain transformers (without peft) loads and that answers as ragtune
does; a model card; refusals in one line; never a half-written export. Tiny models built in code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _export_util import make_adapter
from ragtune.config import Settings
from ragtune.errors import InputError, ModelError
from ragtune.export import export
from ragtune.models.prompts import closed_book_messages
from ragtune.winner import write_winner

QUESTIONS = [f"What is the capital of Land {i}?" for i in range(12)] + \
            [f"Which river floods Land {i} in spring?" for i in range(8)]


@pytest.fixture(scope="module")
def choice(tmp_path_factory, tiny_lm_dir) -> Path:
    """A choose folder: a fine-tuned adapter, a RAFT adapter trained from it, an (empty) kb, results and winner."""
    folder = tmp_path_factory.mktemp("choice")
    make_adapter(tiny_lm_dir, folder / "finetuned", 1)
    raft = make_adapter(tiny_lm_dir, folder / "raft", 2)
    config = json.loads((raft / "adapter_config.json").read_text())
    (raft / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "../finetuned"}))
    (folder / "kb").mkdir()
    variants = {name: {"score": s, "ci": {"score": [s - 0.1, s + 0.1]}, "latency_s": {"p50": 0.5}}
                for name, s in [("base", 0.1), ("rag", 0.4), ("finetuned", 0.5), ("finetuned+rag", 0.45),
                                ("raft", 0.42)]}
    (folder / "results.json").write_text(json.dumps({
        "headline": "f1", "qa": {"n": 20}, "variants": variants, "advice": {"recommendation": "finetune"},
        "choose": {"train_data": {"origin": "qa train split", "examples": 40, "synthetic": False}}}))
    settings = Settings()
    settings.generator.max_new_tokens, settings.generator.repeat_ngram, settings.retrieval.k = 12, 0, 4
    write_winner(folder, recommendation="finetune", best="finetuned", tied=[], base_model=str(tiny_lm_dir),
                 settings=settings, instruction=None)
    return folder


def plain_answers(folder: Path, questions: list[str]) -> list[str]:
    """Greedy answers of an exported folder from plain transformers in a fresh process where peft cannot load."""
    script = f"""
import json, sys
sys.modules["peft"] = None  # importing peft would fail: the export must not need it
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, questions = {str(folder)!r}, {questions!r}
tok, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
out = []
for q in questions:
    messages = {closed_book_messages("QUESTION")!r}
    messages[-1]["content"] = q
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")
    new = model.generate(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
    new = new[0, ids["input_ids"].shape[1]:].tolist()  # the folder's generation config
    new = new[:new.index(tok.eos_token_id)] if tok.eos_token_id in new else new
    out.append(tok.decode(new, skip_special_tokens=True).strip())
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hf_export_loads_without_peft_and_answers_as_ragtune(choice, tmp_path, one_torch_thread):
    from ragtune.models.backends import load_generator

    out = export(choice, tmp_path / "hf")
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md"} <= {p.name for p in
                                                                                           out.iterdir()}
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["max_new_tokens"] == 12 and generation.get("do_sample") is False
    ragtune = load_generator(str(choice / "finetuned"), backend="transformers", max_new_tokens=12, repeat_ngram=0)
    expected = [ragtune(closed_book_messages(q)) for q in QUESTIONS]
    assert len(set(expected)) > 1  # the questions get different answers: the comparison can fail
    assert plain_answers(out, QUESTIONS) == expected
    base = load_generator(str(json.loads((choice / "finetuned" / "adapter_config.json").read_text())
                              ["base_model_name_or_path"]), backend="transformers", max_new_tokens=12,
                          repeat_ngram=0)
    assert [base(closed_book_messages(q)) for q in QUESTIONS] != expected  # the adapter was merged in


def test_an_adapter_trained_from_another_is_merged_through_both(choice, tmp_path, one_torch_thread):
    from ragtune.models.backends import load_generator

    out = export(choice, tmp_path / "raft", contestant="raft")
    ragtune = load_generator(str(choice / "raft"), backend="transformers", max_new_tokens=12, repeat_ngram=0)
    assert plain_answers(out, QUESTIONS[:5]) == [ragtune(closed_book_messages(q)) for q in QUESTIONS[:5]]
    card = (out / "README.md").read_text()
    assert "| raft | 0.420 [0.320, 0.520] | 0.50 s |" in card and "qa train split, 40 examples" in card
    assert "`retrieval.k` = 4" in card and "RAGTUNE_GENERATOR__BACKEND=openai" in card
    assert "licence: unknown" in card  # a folder without a model card


def test_refusals_are_one_line_and_leave_nothing_behind(choice, tmp_path, tiny_lm_dir):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    cases = [
        (lambda: export(tmp_path / "busy", tmp_path / "o1"), "neither a `ragtune choose` output nor an adapter"),
        (lambda: export(choice, tmp_path / "busy"), "exists and is not empty; pick a new folder, or pass --force"),
        (lambda: export(choice, tmp_path / "o2", fmt="onnx"), "--format onnx: unknown"),
        (lambda: export(choice, tmp_path / "o2", fmt="gguf", outtype="q4_k"), "--outtype q4_k: unknown"),
        (lambda: export(choice / "finetuned", tmp_path / "o3", contestant="raft"), "only for a `ragtune choose`"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message) as err:
            call()
        assert "\n" not in str(err.value)
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(choice, broken)
    shutil.rmtree(broken / "raft")
    with pytest.raises(InputError, match="adapter files deleted"):
        export(broken, tmp_path / "o4", contestant="raft")
    (broken / "winner.toml").write_text((broken / "winner.toml").read_text().replace('raft = "raft"\n', ""))
    with pytest.raises(InputError, match="--contestant raft: not trained"):
        export(broken, tmp_path / "o5", contestant="raft")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "busy"]  # no temporary folder left
    runner = CliRunner()
    from ragtune.cli.main import _register, app

    _register()
    result = runner.invoke(app, ["export", str(tmp_path / "busy"), "--out", str(tmp_path / "o6")])
    assert result.exit_code != 0 and "neither a `ragtune choose` output" in str(result.exception)


def test_force_replaces_and_a_failed_export_keeps_the_old_one(choice, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def broken(*args, **kwargs):
        raise ModelError("model 'x': cannot be loaded")

    monkeypatch.setattr("ragtune.export.hf.write_hf", broken)
    with pytest.raises(ModelError):
        export(choice, out, force=True)
    assert [p.name for p in out.iterdir()] == ["old.txt"] and len(list(tmp_path.iterdir())) == 1
    monkeypatch.undo()
    export(choice, out, force=True, contestant="base")
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
    assert json.loads((out / "ragtune-export.json").read_text())["contestant"] == "base"
