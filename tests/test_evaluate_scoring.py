"""Per-variant figures computed from the answers a run holds."""

from ragtune.evaluate.scoring import reach


def test_reach_counts_prompts_holding_the_answer_and_never_an_abstained_one():
    def record(answer, hits, abstained=False, gold=()):
        return {"answers": [answer], "gold_sources": list(gold), "scores": {"abstained": abstained},
                "hits": [{"source": s, "text": t} for s, t in hits]}

    records = [
        record("Zembla", [("a.txt", "The capital is Zembla.")]),  # the answer's text is in a passage
        record("Quorra", [("b.txt", "Nothing here.")], gold=["b.txt"]),  # the gold source is in the prompt
        record("Morbek", [("c.txt", "The capital is Morbek.")], abstained=True),  # turned away: no prompt at all
        record("Tarkin", [("d.txt", "Other words.")]),
    ]
    assert reach(records) == 0.5 and reach([]) == 0.0
