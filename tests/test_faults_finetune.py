"""Fault suite, datasets and fine-tuning: malformed datasets are named row by row, absurd hyper-parameters are
refused before anything is loaded or written, a mismatched resume is a clear error, a diverging loss stops."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _faults_util import one_line
from ragtune.cli.main import _register, app
from ragtune.errors import ConfigError, InputError, TrainingError
from ragtune.finetune.check import check_dataset
from ragtune.finetune.data import load_examples


def check_cli(path: Path) -> tuple[int, dict]:
    """`ragtune data check PATH --no-tokens --json`: exit code and report."""
    _register()
    result = CliRunner().invoke(app, ["data", "check", str(path), "--no-tokens", "--json"])
    return result.exit_code, json.loads(result.stdout)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def errors_of(report: dict) -> list[tuple[str, str, list[str]]]:
    return [(f["kind"], f["message"], f["where"]) for f in report["findings"] if f["severity"] == "error"]


# -- malformed datasets ------------------------------------------------------------------------------------

def test_not_json_names_every_bad_line(tmp_path):
    path = write(tmp_path / "qa.jsonl", '{"question": "ok?", "answer": "yes"}\nthis is not json\n{"question": \n')
    code, report = check_cli(path)
    assert code == 1
    assert [(k, w) for k, _, w in errors_of(report)] == [("schema", [f"{path}:2"]), ("schema", [f"{path}:3"])]
    with pytest.raises(InputError) as info:
        load_examples(path)
    assert one_line(str(info.value)).startswith(f"{path}:2: json: not valid JSON") and "data check" in str(info.value)


def test_wrong_types_name_the_field(tmp_path):
    path = write(tmp_path / "qa.jsonl", "\n".join(json.dumps(r) for r in [
        {"question": ["a", "list"], "answer": "x"},
        {"messages": "hello"},
        {"messages": [{"role": "wizard", "content": "hi"}]},
        {"prompt": "p", "completion": {"nested": True}},
        42,
    ]))
    code, report = check_cli(path)
    assert code == 1
    messages = [m for kind, m, _ in errors_of(report) if kind == "schema"]
    assert messages == ["question: expected text, got list", "messages: not a JSON list of {role, content}",
                        "messages[0]: expected {role: system|user|assistant, content: text}",
                        "completion: expected text, got dict", "row: expected a JSON object, got int"]


def test_empty_strings_are_errors(tmp_path):
    path = write(tmp_path / "qa.jsonl", '{"question": "", "answer": "yes"}\n{"question": "why?", "answer": " "}\n')
    code, report = check_cli(path)
    assert code == 1
    [(kind, message, where)] = errors_of(report)
    assert kind == "empty" and where == [f"{path}:1", f"{path}:2"]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_dataset_fails_data_check(tmp_path, content):
    path = write(tmp_path / "qa.jsonl", content)
    code, report = check_cli(path)  # it used to pass: "OK", exit 0, with nothing to train on
    assert code == 1 and report["examples"] == 0
    assert any("no usable examples" in m for _, m, _ in errors_of(report))
    with pytest.raises(InputError, match="no examples"):
        load_examples(path)


def test_one_example_is_checked_and_trains(tmp_path, tiny_lm_dir):
    from ragtune.finetune.train import FineTuner

    path = write(tmp_path / "qa.jsonl", '{"question": "colour of the sky?", "answer": "blue"}\n')
    code, report = check_cli(path)
    assert code == 0 and report["examples"] == 1
    assert any(f["kind"] == "size" and f["severity"] == "warning" for f in report["findings"])
    result = FineTuner(str(tiny_lm_dir), max_steps=2, batch_size=1, max_seq_tokens=48, eval_every=1,
                       save_every=10).fit(path, out=tmp_path / "ft")
    assert result.steps == 2 and (tmp_path / "ft" / "adapter_config.json").is_file()


def test_hundred_thousand_character_answer_is_counted_not_crashed(tmp_path, tiny_lm_dir):
    from transformers import AutoTokenizer

    long = " ".join(f"word{i}" for i in range(17_000))[:100_000]
    path = write(tmp_path / "qa.jsonl", "\n".join(json.dumps(r) for r in [
        {"question": "recite it", "answer": long}, {"question": "short?", "answer": "yes"}]))
    report = check_dataset(path, tokenizer=AutoTokenizer.from_pretrained(tiny_lm_dir), max_tokens=256)
    assert report.ok
    too_long = next(f for f in report.findings if f.kind == "too_long")
    assert too_long.where == [f"{path}:1"] and "would be cut" in too_long.message
    assert report.stats["tokens"]["max"] > 10_000


def test_csv_text_in_a_jsonl_file_names_the_lines(tmp_path):
    path = write(tmp_path / "qa.jsonl", "question,answer\nsky colour?,blue\ngrass colour?,green\n")
    code, report = check_cli(path)
    assert code == 1
    assert [w for kind, _, w in errors_of(report) if kind == "schema"] == [[f"{path}:{n}"] for n in (1, 2, 3)]
    # the same rows in a .csv are read as intended
    code, report = check_cli(write(tmp_path / "qa.csv", path.read_text()))
    assert code == 0 and report["examples"] == 2


def test_csv_with_unknown_columns_names_the_row(tmp_path):
    path = write(tmp_path / "qa.csv", "q,a\nsky colour?,blue\n")
    code, report = check_cli(path)
    assert code == 1
    [(kind, message, where), (_, nothing, _)] = errors_of(report)
    assert message.startswith("row: no known fields") and where == [f"{path}:2"] and "no usable" in nothing


def test_binary_dataset_is_one_line(tmp_path):
    path = write(tmp_path / "qa.jsonl", b"\x00\x01\x02PK\x03\x04" * 100)
    with pytest.raises(InputError) as info:
        load_examples(path)
    assert "looks like binary data" in one_line(str(info.value)) and str(path) in str(info.value)


def test_fifo_dataset_does_not_hang(tmp_path):
    path = tmp_path / "qa.jsonl"
    os.mkfifo(path)
    signal.alarm(30)  # a hang fails the test instead of CI
    try:
        with pytest.raises(InputError, match="named pipe"):
            load_examples(path)
    finally:
        signal.alarm(0)


# -- absurd hyper-parameters -------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, field", [
    (["--epochs", "-1"], "finetune.epochs"),
    (["--lr", "1e9"], "finetune.learning_rate"),
    (["--batch-size", "0"], "finetune.batch_size"),
    (["--grad-accum", "0"], "finetune.gradient_accumulation"),
])
def test_absurd_flags_are_refused_before_anything_is_written(tmp_path, monkeypatch, flags, field):
    monkeypatch.chdir(tmp_path)
    data = write(tmp_path / "qa.jsonl", '{"question": "sky?", "answer": "blue"}\n')
    _register()
    result = CliRunner().invoke(app, ["finetune", str(data), "--out", str(tmp_path / "ft"), *flags])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError), result.output
    message = one_line(str(result.exception))
    assert field.split(".")[1] in message and ("greater than" in message or "less than" in message)
    assert not (tmp_path / "ft").exists()


@pytest.mark.parametrize("where", ["toml", "env"])
def test_absurd_values_in_toml_or_environment_are_refused_alike(tmp_path, monkeypatch, where):
    from ragtune.finetune.train import finetune

    monkeypatch.chdir(tmp_path)
    if where == "toml":
        (tmp_path / "ragtune.toml").write_text("[finetune]\nlearning_rate = 1e9\n")
    else:
        monkeypatch.setenv("RAGTUNE_FINETUNE__LEARNING_RATE", "1e9")
    with pytest.raises(ConfigError) as info:  # the public entry reads the settings; FineTuner is handed them
        finetune(tmp_path / "qa.jsonl", model="smollm2")
    message = one_line(str(info.value))
    assert "finetune.learning_rate" in message and "less than or equal to 0.1" in message


def test_learning_rate_bound_allows_every_usual_value():
    from ragtune.config import MAX_LEARNING_RATE, FinetuneSettings

    for lr in (1e-5, 2e-4, 1e-3, 3e-3, 1e-2):  # full fine-tuning .. aggressive LoRA
        assert FinetuneSettings(learning_rate=lr).learning_rate == lr
    assert MAX_LEARNING_RATE == 0.1


# -- resume and divergence ---------------------------------------------------------------------------------

def _foreign_checkpoint(out: Path, state: dict | str) -> Path:
    import torch
    from safetensors.torch import save_file

    step = out / "checkpoints" / "step-4"
    step.mkdir(parents=True)
    save_file({"other.model.layer.weight": torch.zeros(3, 3)}, str(step / "trainable.safetensors"))
    (step / "state.json").write_text(state if isinstance(state, str) else json.dumps(state))
    return step


@pytest.mark.parametrize("state", [{"fingerprint": "from-another-run", "step": 4}, "{truncated"])
def test_resume_into_a_mismatched_or_damaged_run_is_a_clear_error(tmp_path, tiny_lm_dir, state):
    from ragtune.finetune.train import FineTuner

    data = write(tmp_path / "qa.jsonl", "\n".join(json.dumps({"question": f"item {i}?", "answer": "red"})
                                                  for i in range(8)))
    step = _foreign_checkpoint(tmp_path / "ft", state)
    saved = {p.name: p.read_bytes() for p in step.iterdir()}
    with pytest.raises(InputError) as info:  # it used to be a bare ValueError from deep in the loader
        FineTuner(str(tiny_lm_dir), max_steps=8, batch_size=2, max_seq_tokens=32).fit(
            data, out=tmp_path / "ft", resume=True)
    message = one_line(str(info.value))
    assert str(step) in message and ("choose another --out" in message or "delete that folder" in message)
    assert {p.name: p.read_bytes() for p in step.iterdir()} == saved  # the other run's checkpoint is intact


def test_checkpoint_restore_checks_the_fingerprint_before_loading(tmp_path):
    from ragtune.finetune import checkpoint

    step = _foreign_checkpoint(tmp_path, {"fingerprint": "abc", "step": 4})

    class Untouchable:
        def unwrap_model(self, model):
            raise AssertionError("weights were loaded before the fingerprint was checked")

    with pytest.raises(InputError, match="was made with other data or settings"):
        checkpoint.restore(step, None, None, None, Untouchable(), fingerprint="xyz")


@pytest.mark.parametrize("losses, diverged", [
    ([2.5, 2.4, float("nan")], "is nan"),
    ([2.5, 2.1, float("inf")], "is inf"),
    ([2.3, 2.2, 2.4, 2.1, 2.2, 3.0, 9.0, 14.0, 20.0, 25.0], "rose from"),
    ([2.3, 2.2, 2.4, 2.1, 2.2, 2.0, 2.6, 1.9, 2.3, 2.5], None),  # a noisy, healthy curve
    ([0.02, 0.01, 0.02, 0.01, 0.02, 0.05, 0.06, 0.05, 0.07, 0.06], None),  # tiny loss that merely grew
])
def test_a_diverging_loss_stops_training_with_advice(losses, diverged):
    from ragtune.finetune.divergence import check_divergence

    if diverged is None:
        for n in range(1, len(losses) + 1):
            check_divergence(losses[:n], 2e-4)
        return
    with pytest.raises(TrainingError) as info:
        for n in range(1, len(losses) + 1):
            check_divergence(losses[:n], 0.05)
    message = one_line(str(info.value))
    assert diverged in message and "lower the learning rate (now 0.05" in message


def test_raw_line_separators_inside_json_strings_are_not_line_breaks(tmp_path):
    # JSON allows U+2028 and \v unescaped inside strings; splitting lines at them broke valid rows
    row = json.dumps({"question": "first\u2028second\vthird?", "answer": "yes"}, ensure_ascii=False)
    path = write(tmp_path / "qa.jsonl", row + "\n" + json.dumps({"question": "q?", "answer": "a"}) + "\n")
    [first, second] = load_examples(path)
    assert first.prompt == "first\u2028second\vthird?" and (first.line, second.line) == (1, 2)
