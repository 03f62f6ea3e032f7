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
import itertools
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import regex as regex_engine

from ragtune import metrics as M
from ragtune.errors import InputError
from ragtune.evaluate.calls import call_score
from ragtune.rag import CITATION

Metric = Callable[[str, Sequence[str]], float]
_CITATION = re.compile(r"\s*" + CITATION.pattern)  # RAG's marker, with the space before it
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


JSON_STARTS = 100  # brackets tried as the start of the JSON inside an answer
REGEX_TIMEOUT_S = 1.0  # per search: a gold with catastrophic backtracking fails instead of hanging the run


@functools.lru_cache(maxsize=1024)
def gold_pattern(gold: str) -> Any:
    # The `regex` engine (re's syntax) because its searches take a timeout; `re` cannot be interrupted.
    try:
        return regex_engine.compile(gold)
    except regex_engine.error as e:
        raise InputError(f"gold answer {gold!r} is not a valid regular expression ({e}); fix it or use another "
                         "metric") from None


def regex(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a gold regular expression is found in the prediction (``re.search``: anchor a gold with ^...$
    for a full match; searching lets a sentence-long answer count, as ``contains`` does)."""
    for answer in answers:
        try:
            if gold_pattern(answer).search(prediction.strip(), timeout=REGEX_TIMEOUT_S):
                return 1.0
        except TimeoutError:
            raise InputError(f"gold answer {answer[:80]!r}: the regular expression ran over {REGEX_TIMEOUT_S:g} s on "
                             f"one prediction (catastrophic backtracking, e.g. (a+)+); simplify it") from None
    return 0.0


def first_json(text: str) -> Any:
    """The prediction parsed as JSON, or else the first JSON object or array inside it (None when there is none)."""
    # RecursionError: JSON nested deeper than Python parses (thousands of levels) is no answer to a question
    try:
        return json.loads(text.strip())
    except ValueError:
        pass
    except RecursionError:
        return None
    decoder = json.JSONDecoder()
    # The first JSON_STARTS brackets only: each failed attempt costs O(len(text)) (the error counts lines), so
    # trying every bracket of a long hostile answer is quadratic.
    for m in itertools.islice(re.finditer(r"[\[{]", text), JSON_STARTS):
        try:
            return decoder.raw_decode(text, m.start())[0]
        except ValueError:
            continue
        except RecursionError:
            return None
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
        except (ValueError, RecursionError):
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
