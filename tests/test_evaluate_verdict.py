"""Inconclusive is a verdict: ties at the top, how many questions would settle them, clear losers never
recommended, a task out of reach; all from real paired comparisons (`metrics.compare`)."""

import math

import numpy as np
import pytest

from ragtune import metrics as M
from ragtune.advise import advise
from ragtune.evaluate.verdict import SIMPLICITY, find_tie, questions_needed


def measured(per_question: dict[str, list[float]], n: int | None = None) -> dict:
    """A results.json built the way `evaluate` builds it: means per variant and every pair's paired bootstrap."""
    names = list(per_question)
    comps = [{"a": a, "b": b, "metric": "f1", **M.compare(per_question[a], per_question[b])}
             for i, a in enumerate(names) for b in names[i + 1:]]
    return {"headline": "f1", "qa": {"n": n or len(next(iter(per_question.values())))}, "comparisons": comps,
            "variants": {v: {"score": float(np.mean(s)), "latency_s": {"p50": 1.0, "p95": 1.0}}
                         for v, s in per_question.items()}}


def scores(rng: np.random.Generator, p: float, n: int) -> list[float]:
    return [float(x) for x in rng.random(n) < p]


def test_a_tie_at_the_top_is_inconclusive_and_says_what_would_settle_it():
    rng = np.random.default_rng(3)
    ev = measured({"base": scores(rng, 0.1, 60), "rag": scores(rng, 0.45, 60), "finetuned": scores(rng, 0.5, 60),
                   "raft": scores(rng, 0.5, 60)})
    tie = find_tie(ev)
    assert tie is not None and set(tie.leaders) >= {"rag", "finetuned", "raft"} and "base" not in tie.leaders
    assert tie.simplest == min(tie.leaders, key=SIMPLICITY.index)
    pair = tie.pair
    want = math.ceil((1.959964 + 0.841621) ** 2 * pair["sd"] ** 2 / pair["diff"] ** 2)
    assert tie.questions is not None and abs(tie.questions - want) <= 1 and tie.questions > 60
    rec = advise({}, ev)
    assert rec.recommendation == "inconclusive"
    assert rec.tied == tie.leaders and rec.simplest == tie.simplest and rec.questions_to_settle == tie.questions
    assert rec.reasons[0].startswith("inconclusive:") and f"simplest of them to run is {tie.simplest}" in rec.reasons[0]
    assert f"about {tie.questions:,} test questions" in rec.reasons[0] and "state a constraint" in rec.reasons[0]
    assert rec.to_json()["recommendation"] == "inconclusive" and rec.to_json()["tied"] == tie.leaders


def test_a_tie_with_no_difference_says_more_questions_will_not_settle_it():
    ev = measured({"base": [0.0] * 40, "rag": [1.0, 0.0] * 20, "finetuned": [0.0, 1.0] * 20})
    rec = advise({}, ev)
    assert rec.recommendation == "inconclusive" and rec.tied == ["rag", "finetuned"] and rec.simplest == "rag"
    assert rec.questions_to_settle is None and "the observed difference is 0" in rec.reasons[0]


def test_a_stated_constraint_decides_a_tie():
    rng = np.random.default_rng(2)
    ev = measured({"base": scores(rng, 0.0, 40), "rag": scores(rng, 0.5, 40), "finetuned": scores(rng, 0.5, 40)})
    assert find_tie(ev) is not None
    rec = advise({"knowledge_change": "daily"}, ev)
    assert rec.recommendation == "rag" and "the stated constraints decide for rag" in rec.reasons[0]
    assert advise({"task": "narrow", "knowledge_change": "static"}, ev).recommendation == "finetune"


def test_the_issue_tie_never_names_a_zero_score_contestant_as_the_winner():
    # the run of the issue: rag 0.222, raft 0.000, everything tied on 9 questions; it used to recommend raft
    ev = measured({"base": [0.0] * 9, "rag": [1, 1, 0, 0, 0, 0, 0, 0, 0], "finetuned": [0.0] * 9,
                   "finetuned+rag": [0, 0, 0, 0, 0, 0, 0, 0, 1], "raft": [0.0] * 9})
    rec = advise({}, ev)
    assert rec.recommendation == "inconclusive" and rec.tied[0] == "rag" and rec.simplest == "base"
    assert any("only 9 test questions" in r for r in rec.reasons)


def test_a_clear_loser_is_never_recommended_even_when_stated_leanings_favour_it():
    rng = np.random.default_rng(3)
    ev = measured({"base": scores(rng, 0.05, 200), "rag": scores(rng, 0.3, 200), "finetuned": scores(rng, 0.7, 200)})
    assert find_tie(ev) is None
    rec = advise({"knowledge_change": "daily", "domain_data_outside_model": True}, ev)
    assert rec.scores["rag"] > rec.scores["finetune"]  # the weights alone would pick rag
    assert rec.recommendation == "finetune"
    assert "rag scores below finetuned with a paired CI clear of 0" in rec.reasons[0]


def test_a_constraint_that_rules_the_winner_out_is_respected():
    rng = np.random.default_rng(4)
    ev = measured({"base": scores(rng, 0.05, 200), "rag": scores(rng, 0.4, 200),
                   "finetuned+rag": scores(rng, 0.8, 200)})
    assert advise({}, ev).recommendation == "both"
    assert advise({"complexity_tolerance": "low"}, ev).recommendation == "rag"


def test_every_score_near_zero_is_out_of_reach_with_the_levers_in_order():
    ev = measured({"base": [0.0] * 40, "rag": [0.0] * 39 + [1.0], "raft": [0.0] * 40})
    rec = advise({}, ev)
    assert rec.recommendation == "inconclusive"
    text = rec.reasons[0]
    assert "out of reach as configured" in text
    levers = ["more of your own training data", "instruction in the training prompts", "more epochs", "--model"]
    assert [text.index(x) for x in levers] == sorted(text.index(x) for x in levers)


def test_few_questions_are_named_but_a_clear_ci_still_decides():
    ev = measured({"base": [0.0] * 12, "rag": [1.0] * 12})
    rec = advise({}, ev)
    assert rec.recommendation == "rag" and any("only 12 test questions" in r for r in rec.reasons)


@pytest.mark.parametrize("diff,sd,n,expected", [
    (0.0, 0.5, 50, None),  # no observed difference: no number of questions is likely to separate them
    (0.1, 0.5, 50, math.ceil(2.801585 ** 2 * 0.25 / 0.01)),
    (1e-4, 0.5, 50, 100_001),  # capped: reported as "more than 100,000"
])
def test_questions_needed(diff, sd, n, expected):
    got = questions_needed({"diff": diff, "sd": sd, "n": n, "ci": [-1, 1]}, None)
    assert got == expected if expected is None or expected > 100_000 else abs(got - expected) <= 1


def test_console_report_and_advice_json_say_the_same_thing(tmp_path):
    import json

    from typer.testing import CliRunner

    from ragtune.cli import evaluate as cli_evaluate
    from ragtune.cli.main import app
    from ragtune.evaluate.report import _choice

    ev = measured({"base": [0.0] * 40, "rag": [1.0, 0.0] * 20, "finetuned": [0.0, 1.0] * 19 + [1.0, 1.0]})
    (tmp_path / "results.json").write_text(json.dumps(ev))
    advice = advise({}, tmp_path).to_json()
    assert advice["recommendation"] == "inconclusive"
    if not any(getattr(c, "name", None) == "advise" for c in app.registered_commands):
        cli_evaluate.register(app)
    out = CliRunner().invoke(app, ["advise", "--evidence", str(tmp_path)]).output
    page = "".join(_choice({"advice": advice}))
    line = "inconclusive (tied: finetuned, rag; simplest to run: rag)"
    assert f"recommendation: {line}" in out and f"Recommendation: {line}" in page
    assert advice["reasons"][0] in out and advice["reasons"][0] in page.replace("&#x27;", "'")
    assert "to settle it:" in out


def test_the_tfhub_bake_off_keeps_its_verdict_with_its_constraints_and_is_a_tie_without():
    # BENCHMARKS.md, tfhub re-run of 2026-12-06: fine-tuned 0.565, RAFT 0.551 (-0.014 [-0.087, +0.043]), ft+RAG 0.493
    v = {"base": 0.0, "rag": 0.0, "finetuned": 0.565, "finetuned+rag": 0.493, "raft": 0.551}

    def c(a, b, lo, hi, verdict):
        return {"a": a, "b": b, "diff": v[a] - v[b], "ci": [lo, hi], "verdict": verdict, "n": 69}

    ev = {"headline": "call", "qa": {"n": 69},
          "variants": {k: {"score": s, "latency_s": {"p50": 1, "p95": 1}} for k, s in v.items()},
          "comparisons": [c("raft", "finetuned", -0.087, 0.043, "tie"), c("raft", "finetuned+rag", -0.014, 0.145, "tie"),
                          c("finetuned", "finetuned+rag", -0.01, 0.15, "tie"), c("finetuned", "base", 0.45, 0.68, "a"),
                          c("rag", "base", 0.0, 0.0, "tie"), c("finetuned", "rag", 0.45, 0.68, "a"),
                          c("raft", "rag", 0.43, 0.66, "a"), c("finetuned+rag", "rag", 0.37, 0.6, "a")]}
    rec = advise({"knowledge_change": "static", "task": "narrow"}, ev)  # bench/choose.py's constraints
    assert rec.recommendation == "finetune" and "the stated constraints decide for finetune" in rec.reasons[0]
    rec = advise({}, ev)
    assert rec.recommendation == "inconclusive" and rec.simplest == "finetuned"
    assert rec.tied == ["finetuned", "raft", "finetuned+rag"]


def test_an_older_results_file_without_sd_or_n_gets_no_false_zero_claim():
    ev = {"headline": "f1", "variants": {"rag": {"score": 0.5}, "finetuned": {"score": 0.45}},
          "comparisons": [{"a": "rag", "b": "finetuned", "diff": 0.05, "ci": [-0.05, 0.15], "verdict": "tie"}]}
    rec = advise({}, ev)
    assert rec.recommendation == "inconclusive" and rec.questions_to_settle is None
    assert "difference is 0" not in rec.reasons[0] and "more test questions (re-run" in rec.reasons[0]
    ev["qa"] = {"n": 50}  # with the number of questions, the CI's width gives the estimate
    assert advise({}, ev).questions_to_settle > 50
