"""Python calls found in free text and compared as syntax trees (the ``call`` metric).

    first_call("You can use hub.load('https://tfhub.dev/google/yamnet/1') here")   # an ast.Call
    call_matches(gold, pred)                                                      # Gorilla's sub-tree rule

A call is found wherever it sits: in a code fence, after ``x = ``, inside prose or a tagged answer
(``<<<api_call>>>: f(x)``). The text is scanned for ``dotted.name(``, the balanced span that follows (strings
respected) is parsed with :mod:`ast`, and method chains (``a.b().c(x)``) are kept whole. Matching follows Gorilla's
APIBench AST sub-tree check: the callee's dotted name must be equal and every gold argument present in the
prediction's call; extra arguments in the prediction are allowed; a gold argument whose value is a bare name
(``model_type=model_type``) is a placeholder and need not be there.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Any

_START = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*\(")  # no space before "(": prose "(...)" is no call
_OPEN, _CLOSE = "([{", ")]}"
_MAX_SPAN = 4000  # a call longer than this is not an answer; with _MAX_TRIES, bounds the work on hostile texts
_MAX_TRIES = 200  # call-shaped openings tried per text
_URL = re.compile(r"^(?:(https?)://)?(?:www\.)?((?:[a-z0-9-]+\.)+[a-z]{2,})(:\d+)?(/[^\s?#]*)?([?#]\S*)?$", re.I)


def _scan(text: str, start: int) -> tuple[int | None, str]:
    """Index just past the bracket closing the one at ``start`` (quotes and escapes respected), or None and the
    brackets that would close what is open when the text ends first ("" if a string is open: a value cut off
    is not guessed; "" too when the window ends before the text)."""
    closers: list[str] = []
    quote, i, end = "", start, min(len(text), start + _MAX_SPAN)
    while i < end:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif text.startswith(quote, i):
                i += len(quote) - 1
                quote = ""
        elif ch in "'\"":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i += len(quote) - 1
        elif ch in _OPEN:
            closers.append(_CLOSE[_OPEN.index(ch)])
        elif ch in _CLOSE:
            closers.pop()
            if not closers:
                return i + 1, ""
        i += 1
    return None, "".join(reversed(closers)) if end == len(text) and not quote else ""


def _span(text: str, match: re.Match, complete: bool = False) -> str | None:
    """The call starting at ``match`` with its trailers (``.c(...)``, ``[0]``, ``(...)``) as one expression.
    ``complete``: a call the text ends inside (an answer cut by the length cap) gets its brackets closed; it
    still scores only if every gold argument is there in full."""
    end, closers = _scan(text, match.end() - 1)
    if end is None:
        return text[match.start():].rstrip() + closers if complete and closers else None
    while (trailer := re.match(r"\s*(?:\.\s*[A-Za-z_]\w*\s*)?[(\[]", text[end:])) is not None:
        nxt, _ = _scan(text, end + trailer.end() - 1)
        if nxt is None:
            break
        end = nxt
    return text[match.start():end]


def calls_in(text: str) -> Iterator[ast.Call]:
    """Every call in ``text``, in reading order; an outer call comes before the calls nested in it."""
    pos, tries = 0, 0
    while tries < _MAX_TRIES and (m := _START.search(text, pos)) is not None:
        tries += 1
        span = _span(text, m, complete=True)
        tree = _parse(span) if span else None
        if span is None or tree is None:
            pos = m.end()  # unclosed, or not a call (e.g. "if("): look further
            continue
        yield from (n for n in _preorder(tree) if isinstance(n, ast.Call))
        pos = m.start() + len(span)


def _parse(span: str) -> ast.expr | None:
    try:
        return ast.parse(span, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        return None


def _preorder(node: ast.AST) -> Iterator[ast.AST]:
    """A node, then its children's subtrees in source order."""
    yield node
    for child in ast.iter_child_nodes(node):
        yield from _preorder(child)


def first_call(text: str) -> ast.Call | None:
    return next(calls_in(text), None)


def callee(call: ast.Call) -> str:
    """The dotted name of what is called (``a.b.c``), or its source text for anything else."""
    return ast.unparse(call.func)


def canonical_string(value: str) -> str:
    """A URL is compared as the resource it names: scheme (http/https), ``www.``, host case and a trailing
    ``/`` do not change it on the web; any other string is compared as written (surrounding space removed)."""
    value = value.strip()
    m = _URL.match(value)
    if not m or not (m.group(1) or m.group(4)):  # a bare "name.tld" is not a URL, "host.tld/path" is
        return value
    return f"{m.group(2).lower()}{m.group(3) or ''}{(m.group(4) or '').rstrip('/')}{m.group(5) or ''}"


_NOT_LITERAL = object()


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


def _canon(value: Any) -> Any:
    """A literal in a form where equal meaning is equal: URLs canonical, list == tuple, True != 1."""
    if isinstance(value, str):
        return ("str", canonical_string(value))
    if isinstance(value, bool) or value is None:
        return ("const", repr(value))
    if isinstance(value, (int, float, complex)):
        return ("num", value)
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(_canon(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("set", frozenset(_canon(v) for v in value))
    if isinstance(value, dict):
        return ("dict", frozenset((_canon(k), _canon(v)) for k, v in value.items()))
    return ("other", repr(value))


def same_value(gold: ast.AST, pred: ast.AST) -> bool:
    """Argument values compared as trees: nested calls by :func:`call_matches`, literals by meaning."""
    if isinstance(gold, ast.Name):
        return True  # a placeholder (see call_matches)
    if isinstance(gold, ast.Call):
        return isinstance(pred, ast.Call) and call_matches(gold, pred)
    if isinstance(gold, (ast.List, ast.Tuple)) and isinstance(pred, (ast.List, ast.Tuple)):
        return len(gold.elts) == len(pred.elts) and all(map(same_value, gold.elts, pred.elts))
    g, p = _literal(gold), _literal(pred)
    if g is not _NOT_LITERAL and p is not _NOT_LITERAL:
        return _canon(g) == _canon(p)
    return ast.dump(gold) == ast.dump(pred)


def _slots(call: ast.Call) -> list[tuple[str | None, ast.AST]]:
    """The arguments in order as (keyword or None, value); ``**kw`` keeps the name ``**``."""
    return [(None, a) for a in call.args] + [(k.arg or "**", k.value) for k in call.keywords]


def call_matches(gold: ast.Call, pred: ast.Call) -> bool:
    """Gorilla's sub-tree rule: same callee, and every gold argument is in the prediction's call.

    A gold keyword argument is found under its name in any order, or as the prediction's positional argument
    at the same place (gold ``f(a=1, b=2)`` matches ``f(1, 2)``); a gold positional argument is found at its
    place, as a positional or a keyword argument (gold ``f(1)`` matches ``f(a=1)``). Extra arguments in the
    prediction are allowed, as in APIBench's evaluation. A gold argument whose value is a bare name
    (``precision=precision``, ``hub.KerasLayer(model_id)``) is a placeholder the question leaves open: it need
    not be there, and any value matches it; inside a list or tuple it matches any element."""
    if callee(gold) != callee(pred):
        return False
    pred_slots = _slots(pred)
    by_name = {name: value for name, value in pred_slots if name is not None}
    for place, (name, value) in enumerate(_slots(gold)):
        if isinstance(value, ast.Name):
            continue  # a placeholder (``model_type=model_type``): the benchmark's gold names no value to match
        at_place = pred_slots[place] if place < len(pred_slots) else None
        candidates = [by_name[name]] if name is not None and name in by_name else []
        if at_place is not None and (at_place[0] is None or name is None):
            candidates.append(at_place[1])
        if not any(same_value(value, c) for c in candidates):
            return False
    return True


def call_score(prediction: str, gold: str) -> float:
    """1.0 when the prediction's first call to the gold's callee matches the gold call (naming the same
    function several times does not help: only the first counts); 0.0 when the gold is no call."""
    want = first_call(gold)
    if want is None:
        return 0.0
    name = callee(want)
    found = next((c for c in calls_in(prediction) if callee(c) == name), None)
    return float(found is not None and call_matches(want, found))


def string_arguments(call: ast.Call) -> list[str]:
    """The string literals among a call's arguments (nested calls included), canonical, in reading order."""
    return [canonical_string(node.value) for _, value in _slots(call) for node in _preorder(value)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]
