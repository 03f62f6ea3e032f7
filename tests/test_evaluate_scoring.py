"""One answer's scores, and per-variant figures computed from the answers a run holds."""

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


def test_a_spaced_citation_marker_is_cited_and_stripped_alike():
    from ragtune.evaluate.scoring import quality
    from ragtune.rag import cite
    from ragtune.types import Hit

    text = "Paris [ 1 ]"
    assert [c.n for c in cite(text, [Hit("Paris is the capital.", "a.txt", 1.0)])] == [1]
    assert quality(["Paris"], text, "exact")["exact"] == 1.0  # the marker RAG cites is not scored as an answer


def test_rags_own_abstention_text_counts_as_an_abstention():
    from ragtune.evaluate.qa import QAItem
    from ragtune.evaluate.scoring import score
    from ragtune.models.prompts import ABSTAIN_TEXT

    unanswerable = QAItem("1", "Who won in 2090?", [], is_impossible=True)
    scores = score(unanswerable, ABSTAIN_TEXT, False, [], "f1")  # written by the model, not flagged by RAG
    assert scores["abstained"] is True and scores["f1"] == 1.0
