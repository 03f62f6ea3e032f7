"""RAG, fine-tuning, both (RAFT), or neither? The seed's criteria as a questionnaire, combined with measured evidence.

    import ragtune
    rec = ragtune.advise({"knowledge_change": "daily", "dataset_examples": 0}, evidence="report/")
    rec.recommendation, rec.reasons

The stated constraints are rules in a table (ANSWER_RULES: a condition, the option it favours, a weight and a
reason); the measured evidence is read by code (`evidence_reasons`, `raft_reasons`) that gives reasons of the
same shape, each quoting the stated constraint or the measured figure behind it.
Measured evidence weighs more than stated constraints: it is this user's data speaking.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragtune.errors import ConfigError, InputError
from ragtune.evaluate.verdict import (
    OPTION,
    Tie,
    beaten_by,
    few_questions,
    find_tie,
    out_of_reach,
    ranking,
    settle_text,
    tie_text,
    too_few,
)

# key → (allowed values or a type, question asked interactively)
QUESTIONS: dict[str, tuple[Any, str]] = {
    "knowledge_change": (("static", "yearly", "monthly", "daily"), "How often does the knowledge change?"),
    "domain_data_outside_model": (bool, "Is the knowledge domain-specific, outside what the model was trained on?"),
    "dataset_examples": (int, "How many task examples (question → answer) do you have? (0 when none)"),
    "task": (("narrow", "broad"), "Is the task narrow and well defined (one format/skill) or broad?"),
    "compute": (("low", "medium", "high"), "Compute and memory budget for training?"),
    "latency_ms": (int, "Latency budget per answer, in milliseconds?"),
    "complexity_tolerance": (("low", "high"), "Tolerance for system complexity (an index to run, models to retrain)?"),
}
WHAT_TO_MEASURE = [
    "run `ragtune eval QA_FILE --kb DIR --model BASE --finetuned DIR --out report/` on a sample of your questions, "
    "then `ragtune advise --evidence report/`: quality per variant with confidence intervals decides ties",
    "retrieval recall@k on your documents (gold_sources in the QA file): RAG cannot beat its retriever",
    "latency p95 per variant against your latency budget",
    "`eval --freshness` if your knowledge changes: how fast each variant follows an update",
]


def validate(answers: dict[str, Any]) -> dict[str, Any]:
    """Check and convert questionnaire answers (strings from --set or TOML values); one clear error per problem."""
    out: dict[str, Any] = {}
    for key, value in answers.items():
        if key not in QUESTIONS:
            raise ConfigError(f"advise: unknown key '{key}'; use one of {', '.join(QUESTIONS)}")
        kind = QUESTIONS[key][0]
        text = str(value).strip().lower()
        if kind is bool:
            if isinstance(value, bool) or text in ("true", "false", "yes", "no"):
                out[key] = value if isinstance(value, bool) else text in ("true", "yes")
                continue
            raise ConfigError(f"advise: {key}={value!r} must be true or false")
        if kind is int:
            try:
                number = int(value) if not isinstance(value, bool) else None
            except (TypeError, ValueError):
                number = None
            if number is None or number < 0:
                raise ConfigError(f"advise: {key}={value!r} must be a whole number ≥ 0")
            out[key] = number
            continue
        if text not in kind:
            raise ConfigError(f"advise: {key}={value!r} must be one of {', '.join(kind)}")
        out[key] = text
    return out


def read_answers(path: str | Path) -> dict[str, Any]:
    """Answers from a TOML file: top-level keys, or an [advise] table."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: answers file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the file") from None
    return data.get("advise", data)


def read_evidence(evidence: str | Path | dict | None) -> dict | None:
    """results.json from `ragtune eval`: a report folder, the file itself, or the dict."""
    if evidence is None or isinstance(evidence, dict):
        return evidence
    path = Path(evidence)
    path = path / "results.json" if path.is_dir() else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no results.json here; run `ragtune eval ... --out DIR` first") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg}); re-run `ragtune eval`") from None
    if not isinstance(data, dict) or "variants" not in data:
        raise InputError(f"{path}: not a ragtune results.json (no 'variants'); re-run `ragtune eval`")
    return data


@dataclass
class Reason:
    text: str
    favours: str  # rag | finetune | both | raft | base | inconclusive
    weight: float
    cites: str  # "answer:<key>" or "evidence:<results.json key>"
    verdict: bool = False  # the sentence that states the verdict's grounds (a tie, out of reach): listed first


@dataclass
class Recommendation:
    recommendation: str  # rag | finetune | both | raft | base | inconclusive
    reasons: list[str]
    details: list[Reason] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    to_measure: list[str] = field(default_factory=list)
    evidence: str | None = None
    tied: list[str] = field(default_factory=list)  # inconclusive: the contestants tied at the top, best first
    simplest: str | None = None  # inconclusive: the simplest of them to run
    questions_to_settle: int | None = None  # inconclusive: test questions that would likely separate the top two

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return data


Rule = tuple[str, Callable[[dict], bool], str, float, Callable[[dict], str]]
# (answer key, condition, favours, weight, reason) — read top to bottom, every matching row counts.
ANSWER_RULES: list[Rule] = [
    ("knowledge_change", lambda a: a["knowledge_change"] in ("daily", "monthly"), "rag", 2.0,
     lambda a: f"knowledge changes {a['knowledge_change']}: RAG follows an index update at once, a fine-tuned "
               "model stays stale until retrained"),
    ("knowledge_change", lambda a: a["knowledge_change"] == "yearly", "rag", 1.0,
     lambda a: "knowledge changes yearly: each change would mean retraining; updating an index is cheaper"),
    ("knowledge_change", lambda a: a["knowledge_change"] == "static", "finetune", 0.5,
     lambda a: "knowledge is static: what is trained in does not go stale"),
    ("domain_data_outside_model", lambda a: a["domain_data_outside_model"], "rag", 2.0,
     lambda a: "the knowledge is outside the model: RAG puts the facts in the prompt, fine-tuning a small model on "
               "facts recalls them poorly (Ovadia et al. 2023)"),
    ("dataset_examples", lambda a: a["dataset_examples"] >= 1000, "finetune", 2.0,
     lambda a: f"{a['dataset_examples']} task examples are enough to fine-tune on"),
    ("dataset_examples", lambda a: 200 <= a["dataset_examples"] < 1000, "finetune", 1.0,
     lambda a: f"{a['dataset_examples']} task examples: enough for a LoRA adapter on a narrow task"),
    ("dataset_examples", lambda a: a["dataset_examples"] < 200, "finetune", -2.0,
     lambda a: f"{a['dataset_examples']} task examples is little for fine-tuning; consider RAG or `ragtune synth`"),
    ("task", lambda a: a["task"] == "narrow", "finetune", 1.5,
     lambda a: "the task is narrow and well defined: fine-tuning teaches its format and vocabulary"),
    ("task", lambda a: a["task"] == "broad", "rag", 1.0,
     lambda a: "the task is broad: grounding each answer in retrieved passages generalises better than training"),
    ("compute", lambda a: a["compute"] == "low", "finetune", -1.0,
     lambda a: "compute budget is low: training (and retraining) costs what RAG does not"),
    ("compute", lambda a: a["compute"] == "high", "finetune", 0.5,
     lambda a: "compute budget is high: training is affordable"),
    ("latency_ms", lambda a: a["latency_ms"] < 500, "finetune", 1.0,
     lambda a: f"latency budget {a['latency_ms']} ms is tight: RAG adds retrieval and a longer prompt per answer"),
]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def evidence_reasons(ev: dict, answers: dict[str, Any]) -> list[Reason]:
    """Rules on measured figures: significant wins (paired bootstrap) count most; ties count against."""
    v, key = ev["variants"], ev.get("headline", "f1")
    comps = {(c["a"], c["b"]): c for c in ev.get("comparisons", [])}

    def comp(a: str, b: str) -> dict | None:
        if (a, b) in comps:
            return comps[(a, b)]
        c = comps.get((b, a))
        return c and {"diff": -c["diff"], "ci": [-c["ci"][1], -c["ci"][0]],
                      "verdict": {"a": "b", "b": "a"}.get(c["verdict"], "tie")}

    def line(a: str, b: str, c: dict) -> str:
        lo, hi, diff = (x or 0.0 for x in (c["ci"][0], c["ci"][1], c["diff"]))  # `or 0.0` drops a "-0.000"
        return (f"{a} {key} {_pct(v[a].get('score'))} vs {b} {_pct(v[b].get('score'))} "
                f"(difference {diff:+.3f}, 95% CI [{lo:+.3f}, {hi:+.3f}])")

    out: list[Reason] = []
    for variant, option in (("rag", "rag"), ("finetuned", "finetune")):
        c = comp(variant, "base") if variant in v and "base" in v else None
        if c:
            won = c["verdict"] == "a"
            out.append(Reason(line(variant, "base", c) + (": a clear gain" if won else ": no clear gain over the base"),
                              option, 3.0 if won else -1.0, f"evidence:variants.{variant}.score"))
    c = comp("rag", "finetuned") if {"rag", "finetuned"} <= set(v) else None
    if c and c["verdict"] != "tie":
        win = "rag" if c["verdict"] == "a" else "finetune"
        out.append(Reason(line("rag", "finetuned", c), win, 2.0, "evidence:comparisons"))
    if "finetuned+rag" in v and {"rag", "finetuned"} <= set(v):
        c1, c2 = comp("finetuned+rag", "rag"), comp("finetuned+rag", "finetuned")
        if c1 and c2 and c1["verdict"] == c2["verdict"] == "a":
            out.append(Reason(line("finetuned+rag", "rag", c1) + " and beats fine-tuned alone too", "both", 3.0,
                              "evidence:variants.finetuned+rag.score"))
    out += raft_reasons(v, comp, line, ev.get("best"), ev.get("tied_with_best") or [])
    fresh = (ev.get("freshness") or {}).get("variants", {})
    if fresh.get("rag", {}).get("fresh") is not None and fresh.get("finetuned", {}).get("fresh") is not None \
            and fresh["rag"]["fresh"] - fresh["finetuned"]["fresh"] > 0.2 and answers.get("knowledge_change") != "static":
        out.append(Reason(f"after a knowledge update RAG scored {_pct(fresh['rag']['fresh'])} on the changed and new facts, "
                          f"fine-tuned {_pct(fresh['finetuned']['fresh'])} until retrained", "rag", 1.0,
                          "evidence:freshness.variants"))
    budget = answers.get("latency_ms")
    for variant, option in (("rag", "rag"), ("finetuned", "finetune")):
        p95 = (v.get(variant, {}).get("latency_s") or {}).get("p95")
        if budget and p95 is not None and p95 * 1000 > budget:
            out.append(Reason(f"{variant} p95 latency {p95 * 1000:.0f} ms exceeds the {budget} ms budget", option,
                              -1.0, f"evidence:variants.{variant}.latency_s.p95"))
    gen = v.get("finetuned", {}).get("generalisation")
    if gen and gen["gap"] > 0.2:
        out.append(Reason(f"fine-tuned scores {_pct(gen['seen']['score'])} on questions seen in training but "
                          f"{_pct(gen['held_out']['score'])} on held-out ones: it memorised rather than generalised",
                          "finetune", -1.0, "evidence:variants.finetuned.generalisation"))
    t = ev.get("training")
    if t and t.get("seconds") is not None and answers.get("compute") == "low":
        out.append(Reason(f"training took {t['seconds']:.0f} s ({t.get('tokens') or '?'} tokens) and must be repeated "
                          "for every knowledge change", "finetune", -0.5, "evidence:training.seconds"))
    return out


def raft_reasons(v: dict, comp: Callable[[str, str], dict | None], line: Callable[[str, str, dict], str],
                 best: str | None = None, tied: list[str] | tuple = ()) -> list[Reason]:
    """RAFT (train on the passages) when combining naively fails: retrieval hurts the adapter, or the adapter
    helps RAG; measured RAFT results count most."""
    out: list[Reason] = []
    if "raft" in v:
        if best == "raft" or "raft" in tied:
            top = "the best of the contestants" if best == "raft" else \
                f"tied with the best, {best} ({_pct((v.get(best or '') or {}).get('score'))}; paired CI includes 0)"
            out.append(Reason(f"raft scores {_pct(v['raft'].get('score'))}, {top}", "raft", 2.0, "evidence:best"))
        for other in ("finetuned+rag", "finetuned", "rag"):
            c = comp("raft", other) if other in v else None
            if c and c["verdict"] == "a":
                out.append(Reason(line("raft", other, c) + ": RAFT wins", "raft", 3.0 if other == "finetuned+rag"
                                  else 1.5, "evidence:variants.raft.score"))
            elif c and c["verdict"] == "b":
                out.append(Reason(line("raft", other, c) + ": RAFT loses", "raft", -2.0, "evidence:variants.raft.score"))
            elif c and other == "finetuned":  # a tie: the simpler system to serve counts for a little
                out.append(Reason(line("raft", other, c) + ": a tie, and the fine-tuned model answers without a "
                                  "retriever", "finetune", 0.5, "evidence:variants.raft.score"))
        return out
    c = comp("finetuned+rag", "finetuned") if {"finetuned+rag", "finetuned"} <= set(v) else None
    if c and c["verdict"] == "b":
        out.append(Reason(line("finetuned+rag", "finetuned", c) + ": retrieved passages pull an adapter trained "
                          "without them off course; train with them: `ragtune finetune --raft --kb DIR`",
                          "raft", 2.0, "evidence:comparisons"))
    c = comp("finetuned+rag", "rag") if {"finetuned+rag", "rag"} <= set(v) else None
    if c and c["verdict"] == "a":
        out.append(Reason(line("finetuned+rag", "rag", c) + ": fine-tuning adds to RAG; RAFT trains the adapter on "
                          "the passages it will be shown (`ragtune finetune --raft`)", "raft", 1.0,
                          "evidence:comparisons"))
    return out


def excluded(answers: dict[str, Any]) -> set[str]:
    """Options a stated constraint rules out: low tolerance for complexity rules out running two systems."""
    return {"both", "raft"} if answers.get("complexity_tolerance") == "low" else set()


def decided_by_constraints(tie: Tie, answers: dict[str, Any], reasons: list[Reason]) -> str | None:
    """The option among the tied leaders that the stated constraints favour alone, or None when they do not
    tell them apart."""
    options = [OPTION[v] for v in tie.leaders if v in OPTION and OPTION[v] not in excluded(answers)]
    if len(options) == 1 and len(tie.leaders) > 1:
        return options[0]
    stated = {o: sum(r.weight for r in reasons if r.favours == o and r.cites.startswith("answer:")) for o in options}
    top = max(stated.values(), default=0.0)
    winners = [o for o, w in stated.items() if w == top]
    return winners[0] if len(winners) == 1 else None


def _inconclusive(reasons: list[Reason], scores: dict[str, float], answers: dict[str, Any], evidence: Any,
                  to_measure: list[str], tie: Tie | None = None) -> Recommendation:
    ordered = sorted(reasons, key=lambda r: (r.favours != "inconclusive", not r.verdict, -abs(r.weight)))
    return Recommendation("inconclusive", [r.text for r in ordered], ordered, scores, answers, to_measure,
                          str(evidence) if not isinstance(evidence, dict) else "dict",
                          tied=tie.leaders if tie else [], simplest=tie.simplest if tie else None,
                          questions_to_settle=tie.questions if tie else None)


def advise(answers: dict[str, Any] | None = None, evidence: str | Path | dict | None = None) -> Recommendation:
    """Combine questionnaire answers and (optionally) an eval's results.json into a recommendation with reasons.

    With evidence: ``inconclusive`` when every contestant scores near zero, or when the leader ties the
    runner-up (paired CI contains 0) and no stated constraint decides; a contestant another beats with a clear
    CI is never recommended (unless a stated constraint rules the winners out)."""
    answers = validate(answers or {})
    reasons = [Reason(why(answers), favours, weight, f"answer:{key}")
               for key, cond, favours, weight, why in ANSWER_RULES if key in answers and cond(answers)]
    ev = read_evidence(evidence)
    if ev is not None:
        reasons += evidence_reasons(ev, answers)
    score = {opt: sum(r.weight for r in reasons if r.favours == opt) for opt in ("rag", "finetune", "both", "raft")}
    low_complexity = answers.get("complexity_tolerance") == "low"
    few = few_questions(ev) if ev is not None else None
    if few:
        reasons.append(Reason(few, "inconclusive", 0.0, "evidence:qa.n"))
    unclear = out_of_reach(ev) or too_few(ev) if ev is not None else None
    if unclear:
        reasons.append(Reason(unclear, "inconclusive", 0.0, "evidence:variants", verdict=True))
        return _inconclusive(reasons, score, answers, evidence, WHAT_TO_MEASURE)
    tie = find_tie(ev) if ev is not None else None
    decided = decided_by_constraints(tie, answers, reasons) if tie else None
    if tie and decided is None:
        reasons.append(Reason(tie_text(ev or {}, tie), "inconclusive", 0.0, "evidence:comparisons", verdict=True))
        return _inconclusive(reasons, score, answers, evidence, [settle_text(tie)], tie)
    if tie and decided:
        choice = decided
        reasons.append(Reason(f"{', '.join(tie.leaders)} tie on the evidence (paired CI contains 0); the stated "
                              f"constraints decide for {decided}", decided, 0.0, "evidence:comparisons", verdict=True))
    elif score["raft"] > 0 and score["raft"] >= max(score["rag"], score["finetune"], score["both"]) \
            and not low_complexity:
        choice = "raft"
    elif score["both"] > 0 and not low_complexity:
        choice = "both"
    elif score["rag"] > 0 and score["finetune"] > 0 and ev is None and answers.get("complexity_tolerance") == "high" \
            and abs(score["rag"] - score["finetune"]) < 2:
        choice = "both"  # from answers alone: both clearly wanted and complexity is welcome
    elif max(score["rag"], score["finetune"]) <= 0:
        choice = "base"
    else:
        choice = "rag" if score["rag"] >= score["finetune"] else "finetune"  # a tie goes to the cheaper change
    if ev is not None:
        choice = _not_beaten(ev, choice, answers, reasons)
    if score["both"] > 0 and low_complexity:
        reasons.append(Reason("complexity tolerance is low: one system instead of fine-tuned + RAG",
                              choice, 0.0, "answer:complexity_tolerance"))
    if choice == "base":
        reasons.append(Reason("neither RAG nor fine-tuning shows a gain that justifies it", "base", 0.0,
                              "evidence:variants" if ev else "answers"))
    ordered = sorted(reasons, key=lambda r: (r.favours != choice, not r.verdict, -abs(r.weight)))
    return Recommendation(choice, [r.text for r in ordered], ordered, score, answers,
                          [] if ev is not None else WHAT_TO_MEASURE,
                          None if ev is None else str(evidence) if not isinstance(evidence, dict) else "dict")


def _not_beaten(ev: dict, choice: str, answers: dict[str, Any], reasons: list[Reason]) -> str:
    """``choice``, unless its contestant scores below another with a clear CI: then the best contestant no
    stated constraint rules out."""
    variant = next((v for v, o in OPTION.items() if o == choice), None)
    if variant is None or variant not in ev["variants"]:
        return choice
    winners = [w for w in beaten_by(ev, variant) if OPTION.get(w) not in excluded(answers)]
    if not winners:
        return choice
    best = next(v for v in ranking(ev) if OPTION.get(v) not in excluded(answers))
    reasons.append(Reason(f"{variant} scores below {', '.join(winners)} with a paired CI clear of 0, so it is not "
                          f"recommended; {best} is", OPTION.get(best, best), 0.0, "evidence:comparisons", verdict=True))
    return OPTION.get(best, best)
