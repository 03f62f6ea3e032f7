"""Score one answer against its QA item, and summarise a variant's scores (means, CIs, abstention, latency)."""

from __future__ import annotations

import re
from typing import Any, Sequence

from ragtune.evaluate import metrics as M
from ragtune.evaluate.qa import QAItem

_CITATION = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
HEADLINE = {"squad": "f1", "api": "api_match"}
CI_METRICS = {"squad": ("em", "f1", "contains", "rouge_l"), "api": ("api_match", "em", "f1", "contains", "rouge_l")}


def strip_citations(text: str) -> str:
    """Drop [n] markers: they are RAG's bookkeeping, not part of the answer being scored."""
    return _CITATION.sub("", text).strip()


def score(item: QAItem, text: str, abstained: bool, passages: Sequence[str], metric: str,
          judge: Any = None) -> dict[str, Any]:
    """Per-question scores. On an unanswerable question every quality score is 1 when the answer abstains.
    With a judge (a Generator), ``judge_grounded`` holds its verdict on answers given with passages."""
    clean = strip_citations(text)
    declined = M.is_abstention(clean, abstained)
    if item.is_impossible:
        s = {k: float(declined) for k in CI_METRICS[metric]}
    else:
        answer = "" if abstained else clean
        s = {"em": M.exact_match(answer, item.answers), "f1": M.f1(answer, item.answers),
             "contains": M.contains(answer, item.answers), "rouge_l": M.rouge_l(answer, item.answers)}
        if metric == "api":
            s["api_match"] = M.api_match(answer, item.answers)
    s["abstained"] = declined
    s["groundedness"] = M.groundedness(clean, passages) if passages and not declined else None
    if judge is not None and passages and not declined:
        from ragtune.evaluate.judge import judge_grounded

        s["judge_grounded"] = judge_grounded(judge, clean, passages)
    return s


def summarise(records: list[dict], metric: str, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Means of every score, bootstrap CIs of the headline scores, abstention, latency percentiles."""
    out: dict[str, Any] = {"n": len(records)}
    if not records:
        return out
    for name in CI_METRICS[metric]:
        out[name] = sum(r["scores"][name] for r in records) / len(records)
    out["score"] = out[HEADLINE[metric]]
    out["ci"] = {name: list(M.bootstrap_ci([r["scores"][name] for r in records], resamples, seed=seed))
                 for name in CI_METRICS[metric]}
    out["ci"]["score"] = out["ci"][HEADLINE[metric]]
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


def generalisation(records: list[dict], metric: str) -> dict[str, Any] | None:
    """Headline score on questions seen in training vs held out, and the gap (seen - held out)."""
    key = HEADLINE[metric]
    groups = {g: [r["scores"][key] for r in records if r.get("seen") is flag] for g, flag in
              (("seen", True), ("held_out", False))}
    if not groups["seen"] or not groups["held_out"]:
        return None
    means = {g: sum(v) / len(v) for g, v in groups.items()}
    return {"seen": {"score": means["seen"], "n": len(groups["seen"]), "ci": list(M.bootstrap_ci(groups["seen"]))},
            "held_out": {"score": means["held_out"], "n": len(groups["held_out"]),
                         "ci": list(M.bootstrap_ci(groups["held_out"]))},
            "gap": means["seen"] - means["held_out"]}
