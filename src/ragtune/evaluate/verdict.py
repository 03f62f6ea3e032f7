"""When measured evidence decides, and when it cannot: the leader against the runner-up (paired bootstrap), a
tie no stated constraint breaks, how many test questions would likely settle it, and a task out of reach.

    tie = find_tie(results)                     # None when the leader's paired CI against the runner-up excludes 0
    tie.leaders, tie.simplest, tie.questions    # ["finetuned", "raft"], "finetuned", 240

Used by `advise` (so `advise`, `choose`, the report and advice.json say one thing); the pairs come from
results.json ``comparisons`` (`evaluate.runner.compare`, i.e. `metrics.compare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

# contestants by operational cost: nothing to run; an index; a model to train; both; RAFT training on passages
SIMPLICITY = ("base", "rag", "finetuned", "finetuned+rag", "raft")
OPTION = {"base": "base", "rag": "rag", "finetuned": "finetune", "finetuned+rag": "both", "raft": "raft"}
MIN_BOOTSTRAP = 5  # below this no verdict at all: a bootstrap over 1-4 questions has no meaningful interval
MIN_QUESTIONS = 30  # below this a paired bootstrap rarely separates contestants that differ by less than ~0.2
NEAR_ZERO = 0.05  # every contestant at or below this: the task is out of reach as configured
MAX_QUESTIONS = 100_000  # an estimate above this is reported as "more than"
_Z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)  # a two-sided 5% test with 80% power


def comparison(ev: dict, a: str, b: str) -> dict | None:
    """The paired comparison of a against b from results.json, oriented a − b (None when not measured)."""
    for c in ev.get("comparisons", []):
        if (c["a"], c["b"]) == (a, b):
            return c
        if (c["a"], c["b"]) == (b, a):
            return {**c, "a": a, "b": b, "diff": -c["diff"], "ci": [-c["ci"][1], -c["ci"][0]],
                    "verdict": {"a": "b", "b": "a"}.get(c["verdict"], "tie")}
    return None


def ranking(ev: dict) -> list[str]:
    """The measured contestants, highest headline score first (equal scores: the simpler first)."""
    scored = [(v, s["score"]) for v, s in ev["variants"].items() if s.get("score") is not None]
    order = {v: i for i, v in enumerate(SIMPLICITY)}
    return [v for v, _ in sorted(scored, key=lambda vs: (-vs[1], order.get(vs[0], len(order))))]


def beaten_by(ev: dict, variant: str) -> list[str]:
    """The contestants that score above ``variant`` with a paired CI clear of 0."""
    return [w for w in ranking(ev) if w != variant and (c := comparison(ev, w, variant)) and c["verdict"] == "a"]


def questions_needed(c: dict, n: int | None) -> int | None:
    """Test questions that would likely separate the pair: n ≈ (z₀.₉₇₅ + z₀.₈)² · var(d) / mean(d)², from the
    observed per-question differences d (their ``sd``, else the bootstrap CI's width and ``n``). None when the
    observed mean difference is 0 (no number of questions is likely to separate them)."""
    n = c.get("n") or n
    sd = c.get("sd")
    if sd is None and n:
        sd = (c["ci"][1] - c["ci"][0]) / (2 * NormalDist().inv_cdf(0.975)) * math.sqrt(n)
    if sd is None or abs(c["diff"]) < 1e-9:
        return None
    return min(MAX_QUESTIONS + 1, max(math.ceil(_Z ** 2 * sd ** 2 / c["diff"] ** 2), (n or 0) + 1))


@dataclass
class Tie:
    leaders: list[str]  # the leader and every contestant whose paired CI against it contains 0, best first
    simplest: str  # the cheapest of them to run (SIMPLICITY)
    pair: dict  # the leader against the runner-up, oriented leader − runner-up
    questions: int | None  # test questions that would likely separate that pair (None: the difference is 0)
    n: int | None  # test questions measured


def find_tie(ev: dict) -> Tie | None:
    """The tie at the top, or None when the leader is clear of the runner-up (or nothing is compared)."""
    order = ranking(ev)
    if len(order) < 2:
        return None
    leader = order[0]
    pair = comparison(ev, leader, order[1])
    if pair is None or pair["verdict"] != "tie":
        return None
    leaders = [leader] + [v for v in order[1:] if (c := comparison(ev, v, leader)) and c["verdict"] == "tie"]
    simplest = min(leaders, key=lambda v: SIMPLICITY.index(v) if v in SIMPLICITY else len(SIMPLICITY))
    n = (ev.get("qa") or {}).get("n") or pair.get("n")
    return Tie(leaders, simplest, pair, questions_needed(pair, n), n)


def settle_text(tie: Tie) -> str:
    """What would settle a tie: more test questions (how many), or a stated constraint."""
    a, b = tie.pair["a"], tie.pair["b"]
    if abs(tie.pair["diff"]) < 1e-9:
        settle = "the observed difference is 0, so more questions are unlikely to separate them"
    elif tie.questions is None:  # an older results.json: neither sd nor the number of questions recorded
        settle = f"more test questions (re-run `ragtune eval` for an estimate of how many would separate {a} and {b})"
    elif tie.questions > MAX_QUESTIONS:
        settle = f"more than {MAX_QUESTIONS:,} test questions would likely be needed to separate {a} and {b}"
    else:
        settle = (f"about {tie.questions:,} test questions would likely separate {a} and {b} "
                  f"(you measured {tie.n}; estimated from the observed paired variance)")
    return (f"{settle}; or state a constraint that decides (e.g. --set knowledge_change=daily, task=narrow, "
            "complexity_tolerance=low)")


def tie_text(ev: dict, tie: Tie) -> str:
    """One sentence: who ties, the simplest of them, and what would settle it."""
    key, v = ev.get("headline", "the metric"), ev["variants"]
    a, b = tie.pair["a"], tie.pair["b"]
    lo, hi = (x or 0.0 for x in tie.pair["ci"])
    scores = ", ".join(f"{x} {v[x]['score']:.3f}" for x in tie.leaders)
    return (f"inconclusive: {scores} on {key} are tied at the top ({a} − {b} {tie.pair['diff']:+.3f}, paired 95% "
            f"CI [{lo:+.3f}, {hi:+.3f}] contains 0); the simplest of them to run is {tie.simplest}. To settle it: "
            f"{settle_text(tie)}")


def few_questions(ev: dict) -> str | None:
    """A warning when the test part is too small to separate contestants, or None."""
    n = _n(ev)
    if n and n < MIN_QUESTIONS:
        return (f"only {n} test questions: too few to separate the contestants unless a difference is large; "
                f"give at least {MIN_QUESTIONS}")
    return None


def _n(ev: dict) -> int:
    return (ev.get("qa") or {}).get("n") or max((c.get("n") or 0 for c in ev.get("comparisons", [])), default=0)


def too_few(ev: dict) -> str | None:
    """Fewer than MIN_BOOTSTRAP questions: a bootstrap interval means nothing there, whatever it says."""
    n = _n(ev)
    if 0 < n < MIN_BOOTSTRAP:
        return (f"inconclusive: {n} test question(s) cannot separate the contestants (a confidence interval needs "
                f"at least {MIN_BOOTSTRAP}, a verdict about {MIN_QUESTIONS}); give more questions")
    return None


def out_of_reach(ev: dict) -> str | None:
    """Why the measurement cannot separate the contestants (every score near zero), with the levers, or None."""
    scores = [x.get("score") for x in ev["variants"].values() if x.get("score") is not None]
    if not scores or max(scores) > NEAR_ZERO:
        return None
    return (f"inconclusive: every contestant scores at most {max(scores):.3f} on {ev.get('headline', 'the metric')}, "
            "so the measurement cannot separate them: the task is out of reach as configured. Levers, by expected "
            "effect: more of your own training data (--train), the task's instruction in the training prompts, "
            "more epochs (--set finetune.epochs=N), a bigger model (--model). Also check that the metric fits the "
            "task (--metric) and that gold answers score 1 against themselves")


def headline(advice: dict) -> str:
    """The recommendation as the console and the report print it (an advice.json dict): an inconclusive one
    names the tied leaders and the simplest of them."""
    rec = advice["recommendation"]
    if rec == "inconclusive" and advice.get("tied"):
        return f"inconclusive (tied: {', '.join(advice['tied'])}; simplest to run: {advice.get('simplest')})"
    return rec
