"""Score one answer against its QA item, and summarise a variant's scores (means, CIs, abstention, latency).

Every answer gets the text scores (em, f1, contains, rouge_l) and the QA set's metric under its own key
(``headline_key``); ``score`` in results.json is that metric's mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragtune import metrics as M
from ragtune.evaluate.qa import QAItem
from ragtune.evaluate.scorers import metric_score, strip_citations

__all__ = ["by_group", "ci_metrics", "generalisation", "headline_key", "quality", "reach", "score", "strip_citations",
           "summarise"]

# reported for every QA set, whatever its metric: the key in results -> the registered metric
TEXT_SCORES = {"em": "normalized", "f1": "f1", "contains": "contains", "rouge_l": "rouge_l"}
_KEYS = {"normalized": "em"}  # a metric stored under the key it had before it was named
_ALIASES = {"call": ("api_match",)}  # older results.json keys kept beside the metric's own


def headline_key(metric: str) -> str:
    """The key of a metric's scores in predictions and results (``em`` for ``normalized``, else its name)."""
    return _KEYS.get(metric, metric)


def ci_metrics(metric: str) -> tuple[str, ...]:
    """The score keys averaged (with bootstrap CIs) for a QA set scored with ``metric``."""
    return tuple(dict.fromkeys((headline_key(metric), *_ALIASES.get(metric, ()), *TEXT_SCORES)))


def score(item: QAItem, text: str, abstained: bool, passages: Sequence[str], metric: str,
          judge: Any = None) -> dict[str, Any]:
    """Per-question scores. On an unanswerable question every quality score is 1 when the answer abstains.
    With a judge (a Generator), ``judge_grounded`` holds its verdict on answers given with passages."""
    clean = strip_citations(text)
    declined = M.is_abstention(clean, abstained)
    s: dict[str, Any] = quality(item.answers, "" if abstained else text, metric,
                                declined if item.is_impossible else None)
    s["abstained"] = declined
    s["groundedness"] = M.groundedness(clean, passages) if passages and not declined else None
    if judge is not None and passages and not declined:
        from ragtune.evaluate.judge import judge_grounded

        s["judge_grounded"] = judge_grounded(judge, clean, passages)
    return s


def quality(answers: list[str], text: str, metric: str, declined: bool | None = None) -> dict[str, float]:
    """The quality scores of one answer: the text scores and ``metric``'s. ``declined`` is set on an
    unanswerable question, where every score is 1 for an abstention and 0 for any answer."""
    keys = ci_metrics(metric)
    if declined is not None:
        return {k: float(declined) for k in keys}
    s = {key: metric_score(answers, text, name) for key, name in TEXT_SCORES.items()}
    key = headline_key(metric)
    if key not in s:
        s[key] = metric_score(answers, text, metric)
    s.update({alias: s[key] for alias in keys if alias not in s})
    return s


def _fill_missing(records: list[dict], metric: str) -> None:
    """Give answers logged before this metric was chosen (a resumed predictions.jsonl) its scores."""
    keys = ci_metrics(metric)
    for r in records:
        if any(k not in r["scores"] for k in keys):
            declined = r["scores"]["abstained"] if r.get("is_impossible") else None
            r["scores"].update(quality(r["answers"], r["prediction"], metric, declined))


def summarise(records: list[dict], metric: str, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Means of every score, bootstrap CIs of the headline scores, abstention, latency percentiles."""
    out: dict[str, Any] = {"n": len(records)}
    if not records:
        return out
    _fill_missing(records, metric)
    key = headline_key(metric)
    for name in ci_metrics(metric):
        out[name] = sum(r["scores"][name] for r in records) / len(records)
    out["score"] = out[key]
    out["ci"] = {name: list(M.bootstrap_ci([r["scores"][name] for r in records], resamples, seed=seed))
                 for name in ci_metrics(metric)}
    out["ci"]["score"] = out["ci"][key]
    grounded = [r["scores"]["groundedness"] for r in records if r["scores"]["groundedness"] is not None]
    out["groundedness"] = sum(grounded) / len(grounded) if grounded else None
    judged = [r["scores"]["judge_grounded"] for r in records if r["scores"].get("judge_grounded") is not None]
    if judged:
        out["judge_grounded"] = sum(judged) / len(judged)
    impossible = [r for r in records if r.get("is_impossible")]
    answerable = [r for r in records if not r.get("is_impossible")]
    out["abstention"] = {
        "rate": sum(r["scores"]["abstained"] for r in records) / len(records),
        "on_unanswerable": (sum(r["scores"]["abstained"] for r in impossible) / len(impossible)) if impossible else None,
        "on_answerable": (sum(r["scores"]["abstained"] for r in answerable) / len(answerable)) if answerable else None,
        "n_unanswerable": len(impossible),
    }
    lat = [r["latency_s"] for r in records if r.get("latency_s") is not None]
    out["latency_s"] = {"p50": M.percentile(lat, 50), "p95": M.percentile(lat, 95),
                        "mean": sum(lat) / len(lat) if lat else None}
    return out


def by_group(records: list[dict], metric: str, seed: int = 0) -> dict[str, Any] | None:
    """The summary of the team's questions and of the synthetic ones (`choose` tops a small test part up with
    questions synthesised from DOCS), each on its own; None unless both are present."""
    groups = {"team": [r for r in records if not r.get("synthetic")],
              "synthetic": [r for r in records if r.get("synthetic")]}
    if not all(groups.values()):
        return None
    return {name: summarise(rs, metric, seed=seed) for name, rs in groups.items()}


def generalisation(records: list[dict], metric: str) -> dict[str, Any] | None:
    """Headline score on questions seen in training vs held out, and the gap (seen - held out)."""
    key = headline_key(metric)
    groups = {g: [r["scores"][key] for r in records if r.get("seen") is flag] for g, flag in
              (("seen", True), ("held_out", False))}
    if not groups["seen"] or not groups["held_out"]:
        return None
    means = {g: sum(v) / len(v) for g, v in groups.items()}
    return {"seen": {"score": means["seen"], "n": len(groups["seen"]), "ci": list(M.bootstrap_ci(groups["seen"]))},
            "held_out": {"score": means["held_out"], "n": len(groups["held_out"]),
                         "ci": list(M.bootstrap_ci(groups["held_out"]))},
            "gap": means["seen"] - means["held_out"]}


def reach(records: list[dict]) -> float:
    """The share of answers whose prompt held a passage with the answer (`holds_gold`: a gold source, or a
    passage containing a gold answer); an abstained answer had none. Model-free evidence of what retrieval gave
    the model, which separates settings when the scores cannot (a base model scoring 0 on a narrow task)."""
    held = [not r["scores"].get("abstained")
            and any(M.holds_gold(h["source"], h["text"], r["gold_sources"], r["answers"]) for h in r["hits"])
            for r in records]
    return sum(held) / len(held) if held else 0.0
