"""Before any model runs: every question can be scored. Empty or duplicated questions, and gold answers that do
not score 1 against themselves under the QA set's metric, are named by line (or id)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ragtune import metrics as M
from ragtune.errors import InputError
from ragtune.evaluate.qa import QASet
from ragtune.evaluate.scorers import get_metric, gold_pattern, metric_score


def _where(item: Any) -> str:
    line = item.metadata.get("line")
    return f"line {line}" if line is not None else f"id {item.id}"


Problem = tuple[Any, str]  # (the QA item, what is wrong with it)
NORMALISED = frozenset({"normalized", "contains", "f1", "rouge_l"})  # compare SQuAD-normalised text: "the" is blank
MAX_BAD = 0.2  # more than this share of bad lines: the file is refused, not screened


def _question_problems(items: Sequence[Any]) -> list[Problem]:
    """Empty questions, an id twice, or the same question, gold sources and answers twice (it would count twice;
    a question asked again with other gold answers or documents, as SQuAD does, is allowed)."""
    problems: list[Problem] = []
    ids: set[str] = set()
    rows: dict[tuple, str] = {}
    for item in items:
        where = _where(item)
        row = (M.normalize(item.question), tuple(sorted(item.gold_sources)), tuple(sorted(item.answers)))
        if not item.question.strip():
            problems.append((item, "the question is empty"))
        elif item.id in ids:
            problems.append((item, f"id '{item.id}' is used twice"))
        elif row in rows:
            problems.append((item, f"the same question and answers as {rows[row]}"))
        ids.add(item.id)
        rows.setdefault(row, where)
    return problems


def _answer_problems(items: Sequence[Any], metric: str) -> list[Problem]:
    """Gold answers that are blank (or nothing once normalised, e.g. "the"), or that do not score 1 against
    themselves (a regex gold: that does not compile)."""
    problems: list[Problem] = []
    for item in items:
        for answer in [] if item.is_impossible else item.answers:
            if not answer.strip() or (metric in NORMALISED and not M.normalize(answer)):
                problems.append((item, f"gold answer {answer[:80]!r} is blank once normalised (case, punctuation "
                                       "and articles dropped)"))
                break
            try:
                ok = gold_pattern(answer) is not None if metric == "regex" else metric_score([answer], answer, metric) >= 1
            except InputError as e:
                problems.append((item, str(e)))
                break
            if not ok:
                problems.append((item, f"gold answer {answer[:80]!r} does not score 1 against itself under metric "
                                       f"'{metric}'"))
                break
    return problems


def gold_problems(qa: QASet, metric: str, questions: bool = True) -> list[str]:
    """What would make the scores meaningless, one line each: gold answers that are blank or do not score 1
    against themselves, and (with ``questions``) empty or duplicated questions."""
    get_metric(metric)
    found = (_question_problems(qa.items) if questions else []) + _answer_problems(qa.items, metric)
    return [f"{_where(item)}: {why}" for item, why in found]


def check_gold(qa: QASet, metric: str | None = None, questions: bool = True, strict: bool = False) -> QASet:
    """The QA set without the items whose questions or gold answers cannot be scored, each named in
    ``skipped`` with its line and reason, before any model runs. Raises InputError when more than 20% of the
    file's lines are bad (those read by the loader included), or on any bad line when ``strict``. A regex gold
    is checked to compile (a pattern need not match its own text)."""
    metric = metric or qa.metric
    get_metric(metric)
    found = (_question_problems(qa.items) if questions else []) + _answer_problems(qa.items, metric)
    bad = {id(item) for item, _ in found}
    new = [{"line": item.metadata.get("line", item.id), "reason": why} for item, why in found]
    skipped = qa.skipped + [s for s in new if s not in qa.skipped]
    total = qa.lines or len(qa.items) + len(qa.skipped)
    if skipped and (strict or len(skipped) > MAX_BAD * total or len(bad) == len(qa.items)):
        lines = [f"line {s['line']}: {s['reason']}" if isinstance(s["line"], int) else f"id {s['line']}: "
                 f"{s['reason']}" for s in skipped]
        more = f"; and {len(lines) - 5} more" if len(lines) > 5 else ""
        why = "--strict refuses any" if strict else f"{len(skipped)} of {total} lines, more than {MAX_BAD:.0%}"
        raise InputError(f"{qa.name}: {len(skipped)} problem(s) in the QA set under metric '{metric}' ({why}): "
                         f"{'; '.join(lines[:5])}{more}. Fix the QA file, or choose another metric (--metric)")
    if not found:
        return qa if skipped == qa.skipped else replace(qa, skipped=skipped)
    return replace(qa, items=[it for it in qa.items if id(it) not in bad], skipped=skipped)
