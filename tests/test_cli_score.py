"""`ragtune score`: answers from anywhere scored with eval's metrics; --json output, inference, bad rows."""

import json

import pytest
import typer
from typer.testing import CliRunner

from ragtune.cli import score as cli_score

app = typer.Typer()
app.callback()(lambda: None)  # a group, as in `ragtune`, so "score" is a sub-command
cli_score.register(app)


@pytest.fixture(scope="module")
def runner():
    return CliRunner()


def write(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_json_output_in_input_order_with_inferred_metric(runner, tmp_path):
    path = write(tmp_path / "p.jsonl", [
        {"question": "Load resnet50", "answers": ["torch.hub.load(repo_or_dir='pytorch/vision', model='resnet50')"],
         "prediction": "m = torch.hub.load('pytorch/vision', 'resnet50')"},
        {"question": "Load yamnet", "answers": ["hub.load('https://tfhub.dev/google/yamnet/1')"],
         "prediction": "I would use yamnet"},
        {"question": "Load yamnet", "answers": ["hub.load('https://tfhub.dev/google/yamnet/1')"],
         "prediction": "hub.load('tfhub.dev/google/yamnet/1/')"},
    ])
    res = runner.invoke(app, ["score", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"metric": "call", "n": 3, "mean": pytest.approx(2 / 3),
                                      "scores": [1.0, 0.0, 1.0], "skipped": []}
    assert "metric: call (all 3 gold answers are Python calls)" in res.stderr


def test_metric_flag_and_table(runner, tmp_path):
    path = write(tmp_path / "p.jsonl", [
        {"question": "Year?", "answers": ["1889"], "prediction": "It opened in 1889 [1]."},
        {"question": "City?", "answers": "Paris", "prediction": "Rome"},
    ])
    res = runner.invoke(app, ["score", str(path), "--metric", "contains", "--json"])
    assert json.loads(res.stdout)["scores"] == [1.0, 0.0] and res.stderr == ""  # given: nothing inferred
    res = runner.invoke(app, ["score", str(path)])
    assert res.exit_code == 0, res.output
    assert "metric: f1 (gold answers are short (median 1 words))" in res.stdout
    # F1: [it, opened, in, 1889] vs [1889] (the [1] marker removed): P = 1/4, R = 1 -> 0.4; "Rome" 0 -> mean 0.2
    assert "mean f1: 0.200 over 2 answers" in res.stdout


@pytest.mark.parametrize("row,message", [
    ('{"question": "Q?", "answers": ["a"]}', "p.jsonl:2: field 'prediction' must be a string"),
    ('{"question": "Q?", "answers": [], "prediction": "a"}', "p.jsonl:2: field 'answers' must be a non-empty list"),
    ('{"answers": ["a"], "prediction": "a"}', "p.jsonl:2: field 'question' must be a string"),
    ("not json", "p.jsonl:2: not valid JSON"),
])
def test_bad_rows_one_clear_line(runner, tmp_path, row, message):
    path = write(tmp_path / "p.jsonl", [{"question": "Q?", "answers": ["a"], "prediction": "a"}, row])
    res = runner.invoke(app, ["score", str(path), "--json"])
    assert res.exit_code != 0 and message in str(res.exception)


def test_unknown_metric_and_gold_that_cannot_score(runner, tmp_path):
    path = write(tmp_path / "p.jsonl", [{"question": "Q?", "answers": ["not json"], "prediction": "{}"}])
    res = runner.invoke(app, ["score", str(path), "--metric", "bleu"])
    assert "unknown metric 'bleu'" in str(res.exception)
    res = runner.invoke(app, ["score", str(path), "--metric", "json"])
    assert "line 1: gold answer 'not json' does not score 1 against itself under metric 'json'" in str(res.exception)
