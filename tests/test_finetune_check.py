"""`ragtune data check`: schema errors, empty and long rows, duplicates, leakage, answers, size, exit code."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ragtune.cli.main import _register, app
from ragtune.finetune.check import check_dataset, near_duplicate_pairs


def _jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _kinds(report):
    return {f.kind: f for f in report.findings}


def test_schema_errors_and_empty_answers_are_errors(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [
        {"question": "fine?", "answer": "yes"},
        '{"question": oops}',
        {"prompt": "missing completion"},
        {"question": "empty answer", "answer": "  "},
    ])
    report = check_dataset(path)
    assert not report.ok
    schema = [f for f in report.findings if f.kind == "schema"]
    assert {f.where[0] for f in schema} == {f"{path}:2", f"{path}:3"}
    assert _kinds(report)["empty"].where == [f"{path}:4"]


def test_duplicates_near_duplicates_and_leakage(tmp_path):
    things = ["apples", "violins", "rockets", "teapots", "glaciers", "lanterns"]
    owners = ["farmer", "pilot", "baker", "sailor", "miner"]
    rows = [{"question": f"How many {t} does the {o} keep in the old barn near the river?", "answer": f"{i}"}
            for i, (t, o) in enumerate((t, o) for t in things for o in owners)]
    rows.append({"question": "how many APPLES does the farmer keep in the old barn near the river", "answer": "0"})
    rows.append({"question": "How many violins does the pilot keep in that old barn near the river?",
                 "answer": "6"})  # a near duplicate of line 7
    train = _jsonl(tmp_path / "train.jsonl", rows)
    val = _jsonl(tmp_path / "val.jsonl", [
        {"question": "How many rockets does the baker keep in the old barn near the river?", "answer": "12"},
        {"question": "Who wrote Hamlet?", "answer": "Shakespeare"},
    ])
    report = check_dataset(train, validation=val)
    kinds = _kinds(report)
    assert report.ok  # warnings only
    assert kinds["duplicate"].where == [f"{train}:1 = {train}:31"]
    assert [w.split(" (")[0] for w in kinds["near_duplicate"].where] == [f"{train}:7 ~ {train}:32"]
    assert kinds["leakage"].where == [f"{val}:1 = {train}:13"]
    assert "Shakespeare" not in json.dumps(kinds["leakage"].where)
    assert kinds["size"].severity == "warning" and "consider RAG" in kinds["size"].message


def test_dominant_answer_and_answer_stats(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"question": f"item {i} colour?", "answer": "red" if i % 4 else "blue"}
                                         for i in range(40)])
    report = check_dataset(path)
    assert "75%" in _kinds(report)["answers"].message
    assert report.stats["answers"]["distinct"] == 2


def test_over_long_examples_counted_in_model_tokens(tmp_path, tiny_lm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    path = _jsonl(tmp_path / "d.jsonl", [{"question": "short?", "answer": "yes"},
                                         {"question": "long " * 80, "answer": "yes"}])
    report = check_dataset(path, tokenizer=tok, max_tokens=40)
    assert _kinds(report)["too_long"].where == [f"{path}:2"]
    assert report.stats["tokens"]["max"] > 80


def test_near_duplicate_pairs_threshold():
    texts = ["the quick brown fox jumps over the lazy dog", "the quick brown fox jumped over the lazy dog",
             "completely different sentence about databases"]
    pairs = near_duplicate_pairs(texts, 0.6)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]


def test_cli_exit_code_and_json(tmp_path):
    _register()
    runner = CliRunner()
    good = _jsonl(tmp_path / "good.jsonl", [{"question": f"q{i}?", "answer": f"a{i}"} for i in range(5)])
    bad = _jsonl(tmp_path / "bad.jsonl", [{"question": "q?", "answer": "a"}, "{not json"])
    ok = runner.invoke(app, ["data", "check", str(good), "--no-tokens", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["ok"] is True
    res = runner.invoke(app, ["data", "check", str(bad), "--no-tokens"])
    assert res.exit_code == 1
    assert f"{bad}:2" in res.output


def test_piped_report_keeps_a_long_path_and_its_line_on_one_line(tmp_path):
    """Piped (CI logs, scripts), the report is not wrapped at 80 columns: `path:line` stays whole to grep."""
    _register()
    deep = tmp_path / ("a-rather-long-folder-name-" * 3) / "nested"
    deep.mkdir(parents=True)
    bad = _jsonl(deep / "bad.jsonl", [{"question": "q?", "answer": "a"}, "{not json"])
    assert len(f"{bad}:2") > 80
    res = CliRunner().invoke(app, ["data", "check", str(bad), "--no-tokens"])
    assert res.exit_code == 1
    assert any(line.strip() == f"{bad}:2" for line in res.output.splitlines()), res.output
