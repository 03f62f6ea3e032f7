"""`ragtune advise` and `ragtune eval` from the command line."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ragtune.cli import evaluate as cli_evaluate
from ragtune.cli.main import app


@pytest.fixture(scope="module")
def runner():
    if not any(getattr(c, "name", None) == "advise" for c in app.registered_commands):
        cli_evaluate.register(app)
    return CliRunner()


def test_advise_json_from_set_pairs(runner):
    res = runner.invoke(app, ["advise", "--set", "knowledge_change=daily", "--set", "dataset_examples=0",
                              "--set", "domain_data_outside_model=true", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["recommendation"] == "rag"
    assert any("knowledge changes daily" in r for r in data["reasons"])
    assert data["to_measure"]  # no evidence: says what to measure


def test_advise_toml_answers_and_evidence(runner, tmp_path):
    (tmp_path / "constraints.toml").write_text('[advise]\nknowledge_change = "static"\ndataset_examples = 550\n'
                                               'task = "narrow"\n')
    report = tmp_path / "report"
    report.mkdir()
    (report / "results.json").write_text(json.dumps({
        "headline": "api_match",
        "variants": {"base": {"score": 0.0}, "rag": {"score": 0.1}, "finetuned": {"score": 0.7}},
        "comparisons": [{"a": "finetuned", "b": "base", "diff": 0.7, "ci": [0.6, 0.8], "verdict": "a"},
                        {"a": "rag", "b": "finetuned", "diff": -0.6, "ci": [-0.7, -0.5], "verdict": "b"},
                        {"a": "rag", "b": "base", "diff": 0.1, "ci": [-0.01, 0.2], "verdict": "tie"}]}))
    res = runner.invoke(app, ["advise", "--answers", str(tmp_path / "constraints.toml"), "--evidence", str(report)])
    assert res.exit_code == 0, res.output
    assert "recommendation: finetune" in res.output
    assert "finetuned api_match 0.700 vs base 0.000" in res.output


def test_bad_answer_is_one_clear_line():
    proc = subprocess.run([sys.executable, "-m", "ragtune.cli.main", "advise", "--set", "compute=huge"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: advise: compute='huge' must be one of low, medium, high"


def test_eval_missing_qa_file_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ragtune.cli.main", "eval", str(tmp_path / "nope.jsonl")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "nope.jsonl: not found" in proc.stderr and "Traceback" not in proc.stderr


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ragtune.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


@pytest.mark.parametrize("command", ["eval", "score", "choose"])
def test_a_qa_file_that_is_not_utf8_is_one_line_for_every_command(tmp_path, command):
    path = tmp_path / "latin.jsonl"
    path.write_bytes('{"question": "Où?", "answers": ["là"], "prediction": "là"}'.encode("latin-1"))
    args = {"eval": [path], "score": [path], "choose": [tmp_path, path, "--out", tmp_path / "c"]}[command]
    proc = _cli(command, *args)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {path}: not UTF-8 text (byte 0xf9 on line 1); re-save it as UTF-8"


def test_choose_refuses_a_wrong_constraint_before_any_work(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Q?", "answers": ["a"]}))
    proc = _cli("choose", tmp_path, qa, "--out", tmp_path / "out", "--set", "knowledge_change=whenever")
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("error: advise: knowledge_change='whenever' must be one of static, yearly, "
                                   "monthly, daily")
    assert not (tmp_path / "out").exists()


def test_score_skips_rows_whose_gold_cannot_score_and_strict_refuses_them(tmp_path):
    rows = [{"question": f"Load m{i}", "answers": [f"hub.load('https://hub.example/m{i}')"],
             "prediction": f"hub.load('https://hub.example/m{i}')"} for i in range(9)]
    rows.append({"question": "Broken", "answers": ["hub.load(handle='x', 1)"], "prediction": "hub.load('x')"})
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(map(json.dumps, rows)))
    proc = _cli("score", path, "--metric", "call", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n"] == 9 and out["mean"] == 1.0 and out["scores"] == [1.0] * 9 + [None]
    assert out["skipped"][0]["line"] == 10 and "p.jsonl: 1 of 10 lines skipped" in proc.stderr
    strict = _cli("score", path, "--metric", "call", "--strict")
    assert strict.returncode == 1 and "--strict refuses any" in strict.stderr and "line 10" in strict.stderr


def test_eval_names_skipped_lines_first_and_strict_refuses_them(tmp_path):
    qa = tmp_path / "qa.jsonl"
    rows = [{"question": f"Question {i}?", "answers": [f"answer {i}"]} for i in range(9)]
    qa.write_text("\n".join(map(json.dumps, rows)) + "\n" + json.dumps({"question": "Q?", "answers": ["a"],
                                                                        "is_impossible": "false"}))
    proc = _cli("eval", qa, "--variants", "rag", "--out", tmp_path / "r")  # no --kb: stops after the check
    assert proc.returncode == 1 and "no variant can be built" in proc.stderr
    first = proc.stderr.splitlines()[:2]
    assert first == ["qa: 1 of 10 lines skipped (not scored; --strict refuses them):",
                     "  line 10: field 'is_impossible' must be true or false (a JSON boolean), not 'false'"]
    strict = _cli("eval", qa, "--strict", "--out", tmp_path / "r")
    assert strict.returncode == 1 and "--strict refuses any" in strict.stderr and "line 10" in strict.stderr
