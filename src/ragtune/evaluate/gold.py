"""Before any model runs: every question can be scored. Empty or duplicated questions, and gold answers that do
not score 1 against themselves under the QA set's metric, are named by line (or id)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragtune import metrics as M
from ragtune.errors import InputError
from ragtune.evaluate.qa import QASet
from ragtune.evaluate.scorers import get_metric, gold_pattern, metric_score


def _where(item: Any) -> str:
    line = item.metadata.get("line")
    return f"line {line}" if line is not None else f"id {item.id}"


def _question_problems(items: Sequence[Any]) -> list[str]:
    """Empty questions, an id twice, or the same question, gold sources and answers twice (it would count twice;
    a question asked again with other gold answers or documents, as SQuAD does, is allowed)."""
    problems: list[str] = []
    ids: set[str] = set()
    rows: dict[tuple, str] = {}
    for item in items:
        where = _where(item)
        row = (M.normalize(item.question), tuple(sorted(item.gold_sources)), tuple(sorted(item.answers)))
        if not item.question.strip():
            problems.append(f"{where}: the question is empty")
        elif item.id in ids:
            problems.append(f"{where}: id '{item.id}' is used twice")
        elif row in rows:
            problems.append(f"{where}: the same question and answers as {rows[row]}")
        ids.add(item.id)
        rows.setdefault(row, where)
    return problems


def _answer_problems(items: Sequence[Any], metric: str) -> list[str]:
    """Gold answers that do not score 1 against themselves (a regex gold: that does not compile)."""
    problems = []
    for item in items:
        for answer in [] if item.is_impossible else item.answers:
            try:
                ok = gold_pattern(answer) is not None if metric == "regex" else metric_score([answer], answer, metric) >= 1
            except InputError as e:
                problems.append(f"{_where(item)}: {e}")
                continue
            if not ok:
                problems.append(f"{_where(item)}: gold answer {answer[:80]!r} does not score 1 against itself "
                                f"under metric '{metric}'")
    return problems


def gold_problems(qa: QASet, metric: str, questions: bool = True) -> list[str]:
    """What would make the scores meaningless: gold answers that do not score 1 against themselves, and (with
    ``questions``) empty or duplicated questions."""
    get_metric(metric)
    return (_question_problems(qa.items) if questions else []) + _answer_problems(qa.items, metric)


def check_gold(qa: QASet, metric: str | None = None, questions: bool = True) -> None:
    """Raise InputError naming the lines (or ids) whose questions or gold answers cannot be scored, before any
    model runs. A regex gold is checked to compile (a pattern need not match its own text)."""
    metric = metric or qa.metric
    problems = gold_problems(qa, metric, questions)
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise InputError(f"{qa.name}: {len(problems)} problem(s) in the QA set under metric '{metric}': "
                         f"{'; '.join(problems[:5])}{more}. Fix the QA file, or choose another metric (--metric)")
