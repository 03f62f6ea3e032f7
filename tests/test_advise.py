"""The advisor: questionnaire validation, each rule (table-driven), and evidence from an eval's results.json."""

import json

import pytest

from ragtune.advise import ANSWER_RULES, QUESTIONS, advise, validate
from ragtune.errors import ConfigError, InputError


def results(scores: dict[str, float], comparisons: list[tuple[str, str, str]], **extra) -> dict:
    """A minimal results.json: headline scores per variant and the paired-bootstrap verdicts."""
    variants = {v: {"score": s, "latency_s": {"p50": 1.0, "p95": 2.0}} for v, s in scores.items()}
    comps = [{"a": a, "b": b, "metric": "f1", "diff": scores[a] - scores[b],
              "ci": [scores[a] - scores[b] - 0.05, scores[a] - scores[b] + 0.05], "verdict": verdict}
             for a, b, verdict in comparisons]
    return {"headline": "f1", "variants": variants, "comparisons": comps, **extra}


SQUAD_LIKE = results({"base": 0.05, "rag": 0.62, "finetuned": 0.07, "finetuned+rag": 0.55},
                     [("base", "rag", "b"), ("base", "finetuned", "tie"), ("rag", "finetuned", "a"),
                      ("rag", "finetuned+rag", "a"), ("finetuned", "finetuned+rag", "b")])
TFHUB_LIKE = results({"base": 0.0, "rag": 0.20, "finetuned": 0.71, "finetuned+rag": 0.66},
                     [("base", "rag", "b"), ("base", "finetuned", "b"), ("rag", "finetuned", "b"),
                      ("finetuned", "finetuned+rag", "a"), ("rag", "finetuned+rag", "b")])
BOTH_LIKE = results({"base": 0.1, "rag": 0.5, "finetuned": 0.5, "finetuned+rag": 0.8},
                    [("rag", "base", "a"), ("finetuned", "base", "a"), ("rag", "finetuned", "tie"),
                     ("finetuned+rag", "rag", "a"), ("finetuned+rag", "finetuned", "a")])
NOTHING_HELPS = results({"base": 0.30, "rag": 0.31, "finetuned": 0.29},
                        [("rag", "base", "tie"), ("finetuned", "base", "tie"), ("rag", "finetuned", "tie")])


@pytest.mark.parametrize("answers,evidence,expected", [
    # answers alone
    ({"knowledge_change": "daily", "domain_data_outside_model": True, "dataset_examples": 0}, None, "rag"),
    ({"knowledge_change": "static", "dataset_examples": 5000, "task": "narrow", "latency_ms": 200}, None, "finetune"),
    ({"knowledge_change": "monthly", "domain_data_outside_model": True, "dataset_examples": 3000, "task": "narrow",
      "compute": "high", "complexity_tolerance": "high"}, None, "both"),
    ({"dataset_examples": 10, "compute": "low"}, None, "base"),
    # evidence decides: measured wins outweigh stated leanings
    ({}, SQUAD_LIKE, "rag"),
    ({}, TFHUB_LIKE, "finetune"),
    ({}, BOTH_LIKE, "both"),
    ({"complexity_tolerance": "low", "knowledge_change": "daily"}, BOTH_LIKE, "rag"),
    ({}, NOTHING_HELPS, "inconclusive"),  # everything ties: the simplest (base) is named, not recommended
    ({"knowledge_change": "static", "dataset_examples": 5000, "task": "narrow"}, SQUAD_LIKE, "rag"),
])
def test_recommendations(answers, evidence, expected):
    rec = advise(answers, evidence)
    assert rec.recommendation == expected, rec.reasons
    assert rec.reasons and all(isinstance(r, str) and r for r in rec.reasons)
    # without evidence it says what to measure; an inconclusive verdict says what would settle it
    assert bool(rec.to_measure) == (evidence is None or expected == "inconclusive")


def test_evidence_reasons_cite_the_figures():
    rec = advise({}, SQUAD_LIKE)
    assert "rag f1 0.620 vs base 0.050" in rec.reasons[0]
    assert any(d.cites == "evidence:variants.rag.score" for d in rec.details)
    tf = advise({}, TFHUB_LIKE)
    assert any("finetuned f1 0.710 vs base 0.000" in r for r in tf.reasons)


@pytest.mark.parametrize("key,cond,favours,weight,why", ANSWER_RULES)
def test_every_answer_rule_fires_with_its_reason(key, cond, favours, weight, why):
    # find a value of the key that triggers the rule, and check the reason quotes the stated constraint
    kind = QUESTIONS[key][0]
    candidates = kind if isinstance(kind, tuple) else ([True, False] if kind is bool else [0, 100, 300, 2000, 10000])
    value = next(v for v in candidates if cond({key: v}))
    rec = advise({key: value})
    match = [d for d in rec.details if d.cites == f"answer:{key}" and d.favours == favours and d.weight == weight]
    assert match and match[0].text == why({key: value})


def test_latency_and_generalisation_evidence():
    ev = results({"base": 0.1, "rag": 0.6, "finetuned": 0.3}, [("rag", "base", "a"), ("finetuned", "base", "a"),
                                                              ("rag", "finetuned", "a")])
    ev["variants"]["finetuned"]["generalisation"] = {"seen": {"score": 0.9}, "held_out": {"score": 0.1}, "gap": 0.8}
    rec = advise({"latency_ms": 1000}, ev)
    texts = " | ".join(rec.reasons)
    assert "rag p95 latency 2000 ms exceeds the 1000 ms budget" in texts
    assert "0.900 on questions seen in training but 0.100 on held-out" in texts


@pytest.mark.parametrize("answers,message", [
    ({"knowledge_change": "weekly"}, "knowledge_change='weekly' must be one of static, yearly, monthly, daily"),
    ({"dataset_examples": "many"}, "dataset_examples='many' must be a whole number"),
    ({"dataset_examples": -3}, "must be a whole number ≥ 0"),
    ({"domain_data_outside_model": "maybe"}, "must be true or false"),
    ({"budget": "big"}, "unknown key 'budget'"),
])
def test_validation_errors(answers, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        advise(answers)


def test_validate_converts_strings():
    assert validate({"domain_data_outside_model": "true", "dataset_examples": "120", "task": "Narrow"}) == \
        {"domain_data_outside_model": True, "dataset_examples": 120, "task": "narrow"}


def test_evidence_from_a_report_folder(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(TFHUB_LIKE))
    assert advise({}, tmp_path).recommendation == "finetune"
    with pytest.raises(InputError, match="no results.json"):
        advise({}, tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(InputError, match="not a ragtune results.json"):
        advise({}, tmp_path / "bad.json")


RAG_HURTS_ADAPTER = results({"base": 0.0, "rag": 0.0, "finetuned": 0.54, "finetuned+rag": 0.41},
                            [("rag", "base", "tie"), ("finetuned", "base", "a"), ("rag", "finetuned", "b"),
                             ("finetuned+rag", "finetuned", "b"), ("finetuned+rag", "rag", "a")])
RAFT_MEASURED = results({"base": 0.0, "rag": 0.0, "finetuned": 0.54, "finetuned+rag": 0.41, "raft": 0.60},
                        [("rag", "base", "tie"), ("finetuned", "base", "a"), ("rag", "finetuned", "b"),
                         ("finetuned+rag", "finetuned", "b"), ("raft", "finetuned+rag", "a"),
                         ("raft", "finetuned", "tie"), ("raft", "rag", "a")], best="raft", tied_with_best=["finetuned"])


def test_retrieval_hurting_the_adapter_points_at_raft_with_the_figures():
    rec = advise({}, RAG_HURTS_ADAPTER)
    raft = [d for d in rec.details if d.favours == "raft"]
    assert any("finetuned+rag f1 0.410 vs finetuned 0.540" in d.text and "--raft" in d.text for d in raft)
    assert rec.recommendation == "finetune"  # RAFT not measured yet: the measured winner stands


RAFT_CLEAR = results({"base": 0.0, "rag": 0.0, "finetuned": 0.44, "finetuned+rag": 0.41, "raft": 0.60},
                     [("rag", "base", "tie"), ("finetuned", "base", "a"), ("rag", "finetuned", "b"),
                      ("finetuned+rag", "finetuned", "tie"), ("raft", "finetuned+rag", "a"),
                      ("raft", "finetuned", "a"), ("raft", "rag", "a")], best="raft")


def test_a_measured_raft_win_is_recommended():
    rec = advise({}, RAFT_CLEAR)
    assert rec.recommendation == "raft", rec.reasons
    assert any("raft f1 0.600 vs finetuned+rag 0.410" in r for r in rec.reasons)


def test_raft_tied_with_the_adapter_on_a_narrow_static_task_goes_to_the_simpler_system_and_says_why():
    rec = advise({"task": "narrow", "knowledge_change": "static"}, RAFT_MEASURED)
    assert rec.recommendation == "finetune", rec.reasons
    tie = [d for d in rec.details if "raft f1 0.600 vs finetuned 0.540" in d.text]
    assert len(tie) == 1 and tie[0].favours == "finetune" and "without a retriever" in tie[0].text
    assert rec.scores["finetune"] - rec.scores["raft"] == 1.0  # 3 + 2 + 1.5 + 0.5 + 0.5 against 3 + 2 + 1.5


def test_scores_all_near_zero_give_no_recommendation_but_what_to_change():
    flat = results({"base": 0.0, "rag": 0.01, "finetuned": 0.0}, [("rag", "base", "tie"), ("finetuned", "base", "tie")])
    rec = advise({"knowledge_change": "daily"}, flat)
    assert rec.recommendation == "inconclusive"
    assert "cannot separate" in rec.reasons[0] and "--metric" in rec.reasons[0] and rec.to_measure


def test_raft_tied_with_a_better_contestant_is_not_called_the_best():
    tied = results({"base": 0.0, "rag": 0.0, "finetuned": 0.536, "finetuned+rag": 0.478, "raft": 0.493},
                   [("finetuned", "base", "a"), ("rag", "finetuned", "b"), ("raft", "finetuned", "tie"),
                    ("raft", "finetuned+rag", "tie"), ("raft", "rag", "a")],
                   best="finetuned", tied_with_best=["raft", "finetuned+rag"])
    texts = [d.text for d in advise({}, tied).details if d.favours == "raft"]
    assert any("raft scores 0.493, tied with the best, finetuned (0.536" in t for t in texts), texts
    assert not any("the best of the contestants" in t for t in texts)
    assert any("the best of the contestants" in d.text for d in advise({}, RAFT_MEASURED).details)
