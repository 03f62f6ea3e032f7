"""Scores for one answer (EM, F1, containment, ROUGE-L, groundedness, abstention) and for a set (recall@k, MRR,
CIs). The named answer metrics (these and call, json, regex, ...) are registered in evaluate/scorers.py.

Every definition here is written out in docs/evaluate.md; the tests check each against hand-computed cases.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ragtune.index.compress import STOPWORDS  # the one stop-word list; groundedness drops these words

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize(text: str) -> str:
    """SQuAD's official normalisation: lower-case, drop punctuation and articles, collapse white space."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    return float(any(normalize(prediction) == normalize(a) for a in answers)) if answers else 0.0


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)  # SQuAD: both empty is a match, one empty is not
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD token F1, the maximum over the gold answers."""
    return max((_f1(tokens(prediction), tokens(a)) for a in answers), default=0.0)


def contains(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when a normalised gold answer appears, as whole tokens, inside the normalised prediction.

    The "accuracy" of generative QA studies (Mallen et al. 2023; Liu et al. 2023, Lost in the Middle): fair to
    a model that answers in a sentence, where F1 is diluted by the extra words.
    """
    pred = f" {normalize(prediction)} "
    return float(any(gold and f" {gold} " in pred for gold in map(normalize, answers)))


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0  # row[j-1] of the previous row
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, answers: Sequence[str]) -> float:
    """ROUGE-L F-measure (beta = 1) on normalised tokens, the maximum over the gold answers."""
    best = 0.0
    pred = tokens(prediction)
    for answer in answers:
        gold = tokens(answer)
        lcs = _lcs(pred, gold)
        if lcs:
            p, r = lcs / len(pred), lcs / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def groundedness(answer: str, passages: Sequence[str]) -> float | None:
    """Share of the answer's content tokens that occur in the retrieved passages (None: nothing to judge)."""
    content = [t for t in tokens(answer) if t not in STOPWORDS]
    if not content or not passages:
        return None
    support = set(tokens(" ".join(passages)))
    return sum(t in support for t in content) / len(content)


_ABSTAIN = re.compile(  # RAG's own ABSTAIN_TEXT ("I could not find this in the knowledge base.") among them
    r"\b(i (do not|don't|cannot|can't|could not|couldn't) (know|answer|find|tell)"
    r"|not (mentioned|stated|provided|found|specified|in the (context|passages?|sources?))"
    # what small readers write instead of the abstain sentence ("The passage does not contain the answer to the
    # question."); tied to the passages, since "Breakfast is not included." answers a question
    r"|(passages?|context|text|documents?|sources?) (does not|doesn't|do not|don't) (contain|include|provide|mention"
    r"|say|state|specify|give)|missing the answer"
    r"|no (relevant )?(information|answer)|(cannot|can't) be (answered|determined)|unanswerable|unknown)\b", re.IGNORECASE)


def is_abstention(text: str, abstained: bool = False) -> bool:
    """The answer declines to answer: flagged by RAG, empty, or a refusal phrase. The one abstention test:
    scoring counts abstentions with it, and RAG infers no citation for such an answer."""
    return abstained or not text.strip() or bool(_ABSTAIN.search(text))


def _parts(source: str) -> list[str]:
    return [p for p in source.replace("\\", "/").split("/") if p not in ("", ".")]


def is_gold(source: str, gold: Sequence[str]) -> bool:
    """The source is one of the gold sources: equal, or matched by path suffix, component by component, either
    way (``docs/a.md`` is ``/home/me/docs/a.md`` and ``a.md``, however DOCS was typed; ``b/a.md`` is not
    ``ba.md``)."""
    mine = _parts(source)
    for g in gold:
        theirs = _parts(g)
        short, long = sorted((mine, theirs), key=len)
        if source == g or (short and long[len(long) - len(short):] == short):
            return True
    return False


def holds_gold(source: str, text: str, gold_sources: Sequence[str], answers: Sequence[str]) -> bool:
    """A passage holds the answer: it comes from a gold source (by path suffix), or it contains a gold answer."""
    return is_gold(source, gold_sources) or bool(contains(text, answers))


def recall_at_k(retrieved: Sequence[str], gold: Sequence[str], k: int) -> float:
    """1.0 when any gold source is among the first k retrieved sources (`is_gold`)."""
    return float(any(is_gold(s, gold) for s in retrieved[:k]))


def reciprocal_rank(retrieved: Sequence[str], gold: Sequence[str], k: int = 10) -> float:
    """1 / rank of the first gold source within the first k retrieved (0 when absent; `is_gold`)."""
    return next((1.0 / rank for rank, s in enumerate(retrieved[:k], 1) if is_gold(s, gold)), 0.0)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def bootstrap_ci(scores: Sequence[float], resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling questions with replacement."""
    x = np.asarray(scores, dtype=float)
    if x.size == 0:
        return (float("nan"), float("nan"))
    idx = np.random.default_rng(seed).integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def compare(a: Sequence[float], b: Sequence[float], resamples: int = 1000, confidence: float = 0.95,
            seed: int = 0) -> dict:
    """Paired bootstrap of mean(a) - mean(b) over the same questions. The tie rule: when the interval of the
    difference contains 0 the two are a tie; otherwise the one with the higher mean wins. Also the number of
    questions ``n`` and the standard deviation ``sd`` of the per-question differences."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("compare() needs two non-empty score lists over the same questions")
    lo, hi = bootstrap_ci(x - y, resamples, confidence, seed)
    diff = float(x.mean() - y.mean())
    verdict = "tie" if lo <= 0.0 <= hi else ("a" if diff > 0 else "b")
    sd = float((x - y).std(ddof=1)) if x.size > 1 else 0.0  # of the per-question differences: how many would settle a tie
    return {"diff": diff, "ci": [lo, hi], "verdict": verdict, "n": int(x.size), "sd": sd}
