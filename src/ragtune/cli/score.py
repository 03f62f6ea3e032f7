"""`ragtune score`: score answers that came from anywhere with the metrics `ragtune eval` uses.

    ragtune score predictions.jsonl [--metric call] [--json]

Each row: ``{"question": "...", "answers": ["gold", ...], "prediction": "..."}``, optionally ``"metric"``
(the same on every row that has one; ``--metric`` overrides it). ``--json`` prints
``{"metric", "n", "mean", "scores"}`` (one score per row, in input order), so another system's answers (a vendor
API, a colleague's pipeline) compare with ragtune's on the same metric.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

Row = tuple[int, str, list[str], str]  # line, question, gold answers, prediction


def read_predictions(path: Path) -> tuple[list[Row], tuple[str, str] | None]:
    """(line, question, gold answers, prediction) per row, and the metric the rows declare (a ``metric`` field,
    one per file, as in a QA file) with its reason; a bad row is one clear error naming file:line and field."""
    from ragtune.errors import InputError
    from ragtune.evaluate.qa import _declared_metric, read_jsonl

    rows = []
    try:
        lines = list(read_jsonl(path))
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); re-save it as UTF-8") from None
    except RecursionError:
        raise InputError(f"{path}: a row nests JSON thousands of levels deep; give each prediction as a string") from None
    for n, row in lines:
        question, answers, prediction = row.get("question"), row.get("answers"), row.get("prediction")
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(question, str):
            raise InputError(f"{path}:{n}: field 'question' must be a string")
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise InputError(f"{path}:{n}: field 'answers' must be a non-empty list of gold answer strings")
        if not isinstance(prediction, str):
            raise InputError(f"{path}:{n}: field 'prediction' must be a string (the answer to score)")
        rows.append((n, question, answers, prediction))
    if not rows:
        raise InputError(f"{path}: no rows; each line needs question, answers and prediction")
    return rows, _declared_metric(path, lines)


def score_file(path: Path, metric: str | None = None, strict: bool = False
               ) -> tuple[str, str, list[Row], list[float | None], list[dict]]:
    """The metric (given or inferred), why, the rows, one score per row (None for a row whose gold answers
    cannot be scored) and those rows as ``{line, reason}``, after the gold-vs-gold check."""
    from ragtune.evaluate.gold import check_gold
    from ragtune.evaluate.qa import QAItem, QASet
    from ragtune.evaluate.scorers import get_metric, infer_metric, metric_score

    rows, declared = read_predictions(path)
    if metric:
        get_metric(metric)
        reason = "given with --metric"
    else:
        metric, reason = declared or infer_metric([answers for _, _, answers, _ in rows])
    items = [QAItem(str(n), q, answers, metadata={"line": n}) for n, q, answers, _ in rows]
    kept = check_gold(QASet(path.name, items, metric=metric), questions=False, strict=strict)  # rows may repeat
    ok = {it.id for it in kept.items}
    return metric, reason, rows, [metric_score(answers, pred, metric) if str(n) in ok else None
                                  for n, _, answers, pred in rows], kept.skipped


def score_command(
    predictions: Path = typer.Argument(..., help="JSONL rows with question, answers (gold list) and prediction"),
    metric: str | None = typer.Option(None, "--metric", help="exact, normalized, contains, f1, rouge_l, regex, "
                                         "json, call, choice or package.module:function (default: inferred)"),
    as_json: bool = typer.Option(False, "--json", help='print {"metric", "n", "mean", "scores", "skipped"} only'),
    strict: bool = typer.Option(False, "--strict", help="refuse any row whose gold answers cannot be scored "
                                "(default: skip and name them, refusing only when more than 20% are bad)"),
) -> None:
    """Score answers from any system against gold answers, with the metrics `ragtune eval` uses."""
    from ragtune.evaluate.qa import QASet, skipped_lines

    name, reason, rows, scores, skipped = score_file(predictions, metric, strict)
    for line in skipped_lines(QASet(predictions.name, [], skipped=skipped, lines=len(rows))):
        typer.secho(line, err=True, fg="yellow")
    kept = [s for s in scores if s is not None]
    mean = sum(kept) / len(kept)
    if as_json:
        if not metric:
            typer.echo(f"metric: {name} ({reason})", err=True)
        typer.echo(json.dumps({"metric": name, "n": len(kept), "mean": mean, "scores": scores, "skipped": skipped}))
        return
    from rich.table import Table

    from ragtune.cli.output import console as make_console

    typer.echo(f"metric: {name} ({reason})")
    table = Table()
    for col in ("line", name, "question", "prediction"):
        table.add_column(col, justify="right" if col in ("line", name) else "left", overflow="ellipsis",
                         no_wrap=True, max_width=None if col in ("line", name) else 40)
    for (n, question, _, prediction), s in list(zip(rows, scores))[:20]:
        table.add_row(str(n), "skipped" if s is None else f"{s:.3f}", question, prediction.replace("\n", " "))
    console = make_console(highlight=True)
    console.print(table)
    more = f" (first 20 of {len(scores)} shown; --json for all)" if len(scores) > 20 else ""
    console.print(f"mean {name}: {mean:.3f} over {len(kept)} answers{more}")


def register(app: typer.Typer) -> None:
    app.command("score")(score_command)
