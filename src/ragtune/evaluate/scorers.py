"""Named answer metrics, one implementation each, used by `eval`, `score`, the fine-tuning benches and `choose`.

    fn = get_metric("call")                       # or "f1", "json", ..., or "my_pkg.my_module:my_scorer"
    fn("model = hub.load('https://tfhub.dev/google/yamnet/1')", ["hub.load('tfhub.dev/google/yamnet/1')"])  # 1.0
    infer_metric([["hub.load('x')"], ["hub.KerasLayer('y')"]])   # ("call", "all 2 gold answers are Python calls")

Every metric is ``(prediction: str, answers: Sequence[str]) -> float`` in [0, 1], the maximum over the gold
answers (0 when there are none). Definitions: docs/evaluate.md; hand-computed cases: tests/test_evaluate_scorers.py.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import json
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ragtune.errors import InputError
from ragtune.evaluate import metrics as M
from ragtune.evaluate.calls import call_score

if TYPE_CHECKING:
    from ragtune.evaluate.qa import QASet

Metric = Callable[[str, Sequence[str]], float]
_CITATION = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
RAW = frozenset({"call", "json"})  # scored on the answer as written: "[1]" may be code or JSON, not a citation


def strip_citations(text: str) -> str:
    """Drop [n] markers: they are RAG's bookkeeping, not part of the answer being scored."""
    return _CITATION.sub("", text).strip()


def metric_score(answers: Sequence[str], text: str, metric: str) -> float:
    """One answer's score under ``metric`` as `eval` and `score` compute it: citation markers removed first,
    except for ``call`` and ``json``."""
    return get_metric(metric)(text if metric in RAW else strip_citations(text), answers)


def exact(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals a gold answer character for character (surrounding white space aside)."""
    return float(any(prediction.strip() == a.strip() for a in answers))


@functools.lru_cache(maxsize=1024)
def _pattern(gold: str) -> re.Pattern:
    try:
        return re.compile(gold)
    except re.error as e:
        raise InputError(f"gold answer {gold!r} is not a valid regular expression ({e}); fix it or use another "
                         "metric") from None


def regex(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a gold regular expression is found in the prediction (``re.search``: anchor a gold with ^...$
    for a full match; searching lets a sentence-long answer count, as ``contains`` does)."""
    return float(any(_pattern(a).search(prediction.strip()) for a in answers))


def first_json(text: str) -> Any:
    """The prediction parsed as JSON, or else the first JSON object or array inside it (None when there is none)."""
    try:
        return json.loads(text.strip())
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"[\[{]", text):
        try:
            return decoder.raw_decode(text, m.start())[0]
        except ValueError:
            continue
    return None


def _json_within(gold: Any, pred: Any) -> bool:
    """Gold equals pred, where a gold object may leave keys out (its keys a subset, their values equal); in JSON
    ``true`` is not ``1``, while ``1`` equals ``1.0``."""
    if isinstance(gold, dict):
        return isinstance(pred, dict) and all(k in pred and _json_within(v, pred[k]) for k, v in gold.items())
    if isinstance(gold, list):
        return isinstance(pred, list) and len(gold) == len(pred) and all(map(_json_within, gold, pred))
    if isinstance(gold, bool) or isinstance(pred, bool):
        return gold is pred
    if isinstance(gold, (int, float)) and isinstance(pred, (int, float)):
        return gold == pred
    return type(gold) is type(pred) and gold == pred


def json_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction's JSON equals a gold JSON answer, or holds every key of a gold object with equal
    values (extra keys allowed, nested objects alike)."""
    found = first_json(prediction)
    if found is None:
        return 0.0
    for answer in answers:
        try:
            gold = json.loads(answer)
        except ValueError:
            continue  # check_gold names such a gold answer before any model runs
        if _json_within(gold, found):
            return 1.0
    return 0.0


def call(prediction: str, answers: Sequence[str]) -> float:
    """Gorilla's AST sub-tree match of the prediction's first call to the gold's callee (see evaluate/calls.py)."""
    return max((call_score(prediction, a) for a in answers), default=0.0)


_LETTER = re.compile(r"\(?([A-Za-z])\)?[.):]?")
_CHOSEN = (re.compile(r"^\W*([A-Za-z])\W*$"),  # the whole answer is one letter: "B", "(B)", "**B.**"
           re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\(?([A-Za-z])\b(?!['\w])", re.I),
           re.compile(r"^\W*\(?([A-Z])[).:]"),  # "B) Paris", "B. Paris", "(B) ..."
           re.compile(r"\(([A-Z])\)"))  # "... so (B)"


def chosen_letter(text: str) -> str | None:
    """The option letter a multiple-choice answer picks, upper-case, or None when it picks none clearly."""
    for pattern in _CHOSEN:
        m = pattern.search(text.strip())
        if m:
            return m.group(1).upper()
    return None


def choice(prediction: str, answers: Sequence[str]) -> float:
    """Multiple choice: 1.0 when the prediction picks the gold option, named by its letter ("B") or its text
    (compared after normalisation, an "B) " label removed)."""
    letter = chosen_letter(prediction)
    text = M.normalize(re.sub(r"^\W*\(?[A-Z][).:]\s*", "", prediction.strip()))
    for answer in answers:
        gold = _LETTER.fullmatch(answer.strip())
        if (letter is not None and gold and gold.group(1).upper() == letter) or (not gold and text and
                                                                                  text == M.normalize(answer)):
            return 1.0
    return 0.0


METRICS: dict[str, Metric] = {
    "exact": exact, "normalized": M.exact_match, "contains": M.contains, "f1": M.f1, "rouge_l": M.rouge_l,
    "regex": regex, "json": json_match, "call": call, "choice": choice,
}


def _checked(spec: str, fn: Callable) -> Metric:
    """The user's scorer, with its result checked: a number in [0, 1], or a clear error."""
    def scorer(prediction: str, answers: Sequence[str]) -> float:
        try:
            value = fn(prediction, list(answers))
        except Exception as e:  # the user's code: say whose it is instead of a traceback
            raise InputError(f"metric '{spec}' failed on prediction {prediction[:60]!r}: "
                             f"{type(e).__name__}: {e}") from e
        if isinstance(value, bool) or (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
            return float(value)
        raise InputError(f"metric '{spec}' returned {value!r}; a scorer must return a number in [0, 1]")
    return scorer


@functools.lru_cache(maxsize=32)
def _custom(spec: str) -> Metric:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InputError(f"metric '{spec}': write your own scorer as package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or an error while the module runs
        raise InputError(f"metric '{spec}': cannot import '{module_name}' ({type(e).__name__}: {e}); install "
                         "it or put its folder on PYTHONPATH") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise InputError(f"metric '{spec}': module '{module_name}' has no function '{attr}'")
    try:
        inspect.signature(fn).bind("prediction", ["answer"])
    except TypeError:
        raise InputError(f"metric '{spec}': {attr}{inspect.signature(fn)} must take (prediction: str, "
                         "answers: list[str]) and return a number in [0, 1]") from None
    except ValueError:
        pass  # a builtin without an inspectable signature: its calls are checked instead
    return _checked(spec, fn)


def get_metric(name: str) -> Metric:
    """The metric of that name, or the user's ``package.module:function``; a clear error listing the names."""
    if name in METRICS:
        return METRICS[name]
    if ":" in name:
        return _custom(name)
    raise InputError(f"unknown metric '{name}'; use one of {', '.join(METRICS)}, or package.module:function "
                     "for your own scorer")


def _is_call(text: str) -> bool:
    try:
        return isinstance(ast.parse(text.strip(), mode="eval").body, ast.Call)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), (dict, list))
    except ValueError:
        return False


def infer_metric(answers: Sequence[Sequence[str]], choices: bool = False) -> tuple[str, str]:
    """The metric a QA set's gold answers call for, and a one-line reason to print.

    All gold answers Python calls -> ``call``; all JSON objects/arrays -> ``json``; all single option letters
    -> ``choice``; otherwise ``f1`` for short answers and ``rouge_l`` when the median gold answer is longer than
    12 words (F1 and ROUGE-L both give partial credit; ROUGE-L also rewards word order in long answers)."""
    golds = [a.strip() for group in answers for a in group if a.strip()]
    n = len(golds)
    if not golds:
        return "f1", "no gold answers to infer from; token F1"
    if all(map(_is_call, golds)):
        return "call", f"all {n} gold answers are Python calls"
    if all(map(_is_json, golds)):
        return "json", f"all {n} gold answers are JSON objects or arrays"
    if all(re.fullmatch(r"[A-J]", g) for g in golds):
        return "choice", f"all {n} gold answers are option letters" + (" and the questions list choices"
                                                                          if choices else "")
    words = sorted(len(g.split()) for g in golds)
    median = words[len(words) // 2]
    if median > 12:
        return "rouge_l", f"gold answers are long (median {median} words)"
    return "f1", f"gold answers are short (median {median} words)"


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
                ok = _pattern(answer) is not None if metric == "regex" else metric_score([answer], answer, metric) >= 1
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
    from dataclasses import replace

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
