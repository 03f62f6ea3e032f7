"""Fault suite, scoring: hostile predictions files and gold answers for `score` (and the scorers `eval` and
`choose` share) end in a score or one clear line, never a traceback or a hang."""

from __future__ import annotations

import json
import time

import pytest
import typer
from typer.testing import CliRunner

from _faults_util import one_line
from ragtune.cli import score as cli_score
from ragtune.errors import InputError
from ragtune.evaluate.scorers import metric_score
from ragtune.evaluate.scoring import quality

app = typer.Typer()
app.callback()(lambda: None)
cli_score.register(app)


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_score_json_on_a_prediction_nested_a_hundred_thousand_levels(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    path = _write(tmp_path / "p.jsonl", [
        {"question": "Q1", "answers": ['{"a": 1}'], "prediction": deep},
        {"question": "Q2", "answers": ['{"a": 1}'], "prediction": 'here: {"a": 1, "b": 2}'},
        {"question": "Q3", "answers": ['{"a": 1}'], "prediction": 'x {"a": ' * 100_000},
    ])
    started = time.monotonic()
    res = CliRunner().invoke(app, ["score", str(path), "--metric", "json", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["scores"] == [0.0, 1.0, 0.0]
    assert time.monotonic() - started < 10  # was 40 s: every bracket tried as a JSON start, each O(length)


def test_a_predictions_row_nested_as_json_is_one_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"question": "Q", "answers": ["a"], "prediction": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    res = CliRunner().invoke(app, ["score", str(path)])
    assert res.exit_code == 1 and isinstance(res.exception, InputError)
    assert str(path) in one_line(str(res.exception))


def test_a_predictions_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes('{"question": "Année?", "answers": ["1889"], "prediction": "1889"}\n'.encode("latin-1"))
    res = CliRunner().invoke(app, ["score", str(path)])
    assert res.exit_code == 1 and isinstance(res.exception, InputError)
    message = one_line(str(res.exception))
    assert str(path) in message and "not UTF-8" in message and "re-save it as UTF-8" in message


def test_score_uses_the_metric_the_rows_declare(tmp_path):
    path = _write(tmp_path / "p.jsonl", [
        {"question": "Year?", "answers": ["1889"], "prediction": "It opened in 1889.", "metric": "contains"},
        {"question": "City?", "answers": ["Paris"], "prediction": "Paris, France", "metric": "contains"},
    ])
    res = CliRunner().invoke(app, ["score", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"metric": "contains", "n": 2, "mean": 1.0, "scores": [1.0, 1.0],
                                     "skipped": []}  # f1: < 1
    assert "declared on line 1" in res.stderr
    flag = CliRunner().invoke(app, ["score", str(path), "--metric", "exact", "--json"])  # the flag overrides
    assert json.loads(flag.stdout)["scores"] == [0.0, 0.0]
    _write(path, [{"question": "Q", "answers": ["a"], "prediction": "a", "metric": "contains"},
                  {"question": "R", "answers": ["b"], "prediction": "b", "metric": "f1"}])
    mixed = CliRunner().invoke(app, ["score", str(path)])
    assert mixed.exit_code == 1 and "differs from 'contains' on line 1" in one_line(str(mixed.exception))


@pytest.mark.parametrize("gold", [r"(a|aa)+$", r"^(a+)+$", r"(\w+\s?)+!$", r"(x+x+)+y"])
def test_a_catastrophic_gold_regex_ends_within_the_time_limit(gold):
    """A score (the engine may not backtrack on this one) or one line naming the gold; never a hang."""
    started = time.monotonic()
    try:
        assert quality([gold], "a" * 60 + "?", "regex")["regex"] == 0.0  # the path `eval` and `choose` score with
    except InputError as e:
        message = one_line(str(e))
        assert gold[:20] in message and "catastrophic backtracking" in message and "simplify it" in message
    assert time.monotonic() - started < 5
    assert metric_score([r"^\d+ years$"], "12 years", "regex") == 1.0  # ordinary patterns still work


def test_score_of_a_catastrophic_gold_regex_exits_1_in_seconds(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"question": "Q", "answers": [r"(a|aa)+$"], "prediction": "a" * 60 + "!"}])
    started = time.monotonic()
    res = CliRunner().invoke(app, ["score", str(path), "--metric", "regex"])
    assert res.exit_code == 1 and "catastrophic backtracking" in str(res.exception)
    assert time.monotonic() - started < 5
