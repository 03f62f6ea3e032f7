"""Every metric against cases computed by hand."""

import math

import pytest

from ragtune import metrics as M


def test_normalize_squad_rules():
    assert M.normalize("The  Eiffel-Tower, in PARIS!") == "eiffeltower in paris"
    assert M.normalize("an apple a day") == "apple day"


@pytest.mark.parametrize("pred,answers,expected", [
    ("the Eiffel Tower", ["Eiffel Tower"], 1.0),
    ("Eiffel Tower.", ["eiffel tower", "Paris"], 1.0),
    ("Eiffel", ["Eiffel Tower"], 0.0),
    ("anything", [], 0.0),
])
def test_exact_match(pred, answers, expected):
    assert M.exact_match(pred, answers) == expected


def test_f1_by_hand():
    # pred tokens: [in, 1943, radio] ; gold: [1943] → common 1, P = 1/3, R = 1 → F1 = 0.5
    assert M.f1("in 1943 radio", ["1943"]) == pytest.approx(0.5)
    # max over answers: second answer [october, 12, 1943] vs pred [october, 1943]: P=1, R=2/3 → 0.8
    assert M.f1("October 1943", ["NBC", "October 12, 1943"]) == pytest.approx(0.8)
    # repeated tokens count with multiplicity: pred [a.. ] "cat cat" vs "cat dog": common 1, P=.5 R=.5 → .5
    assert M.f1("cat cat", ["cat dog"]) == pytest.approx(0.5)
    assert M.f1("nothing shared", ["other words"]) == 0.0
    assert M.f1("the", ["a"]) == 1.0  # both normalise to empty: SQuAD counts a match


def test_contains_by_hand():
    # a sentence holding the gold answer counts, where F1 would be diluted: "fort caroline was rebuilt in 1964"
    assert M.contains("Fort Caroline was rebuilt in 1964.", ["Fort Caroline"]) == 1.0
    assert M.contains("The Edict of Nantes ended them", ["the Edict of Nantes"]) == 1.0  # articles normalised away
    assert M.contains("in 18640", ["1864"]) == 0.0  # whole tokens only, not substrings
    assert M.contains("Caroline Fort", ["Fort Caroline"]) == 0.0  # order matters
    assert M.contains("anything", []) == 0.0 and M.contains("anything", ["the"]) == 0.0  # empty gold never matches


def test_rouge_l_by_hand():
    # pred [police, killed, gunman] vs gold [police, kill, gunman]: LCS [police, gunman] = 2 → P = R = 2/3
    assert M.rouge_l("police killed the gunman", ["police kill the gunman"]) == pytest.approx(2 / 3)
    # pred [x, y, z, q] vs gold [w, x, y, z]: LCS 3, P = 3/4, R = 3/4
    assert M.rouge_l("x y z q", ["w x y z"]) == pytest.approx(0.75)
    assert M.rouge_l("x y", ["a b"]) == 0.0
    assert M._lcs(list("ABCBDAB"), list("BDCABA")) == 4  # the textbook case


def test_groundedness_by_hand():
    # content tokens of the answer: [eiffel, tower, built, 1889] (of/the are stop words/articles);
    # the passage supports eiffel, tower, 1889 → 3/4
    assert M.groundedness("The Eiffel Tower was built of 1889", ["Eiffel Tower opened in 1889."]) == pytest.approx(0.75)
    assert M.groundedness("the of", ["anything"]) is None
    assert M.groundedness("Paris", []) is None


def test_abstention():
    assert M.is_abstention("I don't know.")
    assert M.is_abstention("The answer is not in the passages.")
    assert M.is_abstention("", False)
    assert M.is_abstention("Paris", True)
    assert not M.is_abstention("Paris")


@pytest.mark.parametrize("text", [  # what SmolLM2-135M wrote in the reader benchmark instead of the abstain sentence
    "The passage does not contain the answer to the question.",
    "The passage is missing the answer to the question.",
    "The Tidewater Ferries chief financial officer is not specified in the passage.",
    "The answer is no. The passage does not provide any information about staff discounts.",
    "The documents don't say.",
])
def test_a_reader_declining_in_its_own_words_is_an_abstention(text):
    assert M.is_abstention(text)


@pytest.mark.parametrize("text", [  # answers that say "not", about the world rather than the passages
    "No, Route C does not carry foot passengers.",
    "Breakfast is not included.",
    "The Aberlune restaurant is not open on Mondays.",
    "The passage is: Lifeboat drills must be finished within 12 minutes.",
])
def test_an_answer_that_negates_is_not_an_abstention(text):
    assert not M.is_abstention(text)


def test_recall_and_mrr_by_hand():
    ranked = ["a", "b", "c", "d"]
    assert M.recall_at_k(ranked, ["c"], 2) == 0.0
    assert M.recall_at_k(ranked, ["c"], 3) == 1.0
    assert M.reciprocal_rank(ranked, ["c", "d"]) == pytest.approx(1 / 3)
    assert M.reciprocal_rank(ranked, ["z"]) == 0.0
    assert M.reciprocal_rank(ranked, ["d"], k=3) == 0.0


def test_percentile():
    assert M.percentile([1, 2, 3, 4, 5], 50) == 3.0
    assert M.percentile([0, 10], 95) == pytest.approx(9.5)  # linear interpolation
    assert M.percentile([], 50) is None


def test_bootstrap_ci_contains_mean_and_is_degenerate_for_constants():
    lo, hi = M.bootstrap_ci([1.0] * 20)
    assert lo == hi == 1.0
    scores = [1.0] * 30 + [0.0] * 70
    lo, hi = M.bootstrap_ci(scores, seed=1)
    assert lo < 0.3 < hi and hi - lo < 0.25  # about ±1.96·sqrt(.21/100) ≈ ±0.09
    assert M.bootstrap_ci(scores, seed=1) == M.bootstrap_ci(scores, seed=1)  # seeded
    assert all(math.isnan(x) for x in M.bootstrap_ci([]))


def test_tie_rule():
    # identical up to one question in a hundred: the difference's CI contains 0 → tie
    a = [1.0] * 50 + [0.0] * 50
    b = [1.0] * 51 + [0.0] * 49
    assert M.compare(a, b)["verdict"] == "tie"
    # a wins on 40 more questions and never loses: the CI excludes 0 → a
    c = [1.0] * 90 + [0.0] * 10
    res = M.compare(c, a)
    assert res["verdict"] == "a" and res["diff"] == pytest.approx(0.4) and res["ci"][0] > 0
    assert M.compare(a, c)["verdict"] == "b"
    with pytest.raises(ValueError):
        M.compare([1.0], [1.0, 0.0])


def test_llm_judge_verdicts():
    from ragtune.evaluate.judge import judge_grounded

    seen = []

    def judge(messages, **kw):
        seen.append(messages)
        return {"Paris": "Yes.", "Rome": "no", "Oslo": "maybe"}[messages[-1]["content"].split("Answer: ")[1].split("\n")[0]]

    assert judge_grounded(judge, "Paris", ["Paris is the capital of France."]) == 1.0
    assert judge_grounded(judge, "Rome", ["Paris is the capital of France."]) == 0.0
    assert judge_grounded(judge, "Oslo", ["Paris is the capital of France."]) is None
    assert judge_grounded(judge, "Paris", []) is None and len(seen) == 3  # no passages: the judge is not asked
    assert "[1] Paris is the capital of France." in seen[0][-1]["content"]


@pytest.mark.parametrize("source,gold,expected", [
    ("docs/a.md", ["docs/a.md"], True),
    ("/home/me/docs/a.md", ["docs/a.md"], True),  # DOCS typed absolute, gold relative
    ("docs/a.md", ["/srv/team/docs/a.md"], True),  # DOCS typed relative, gold absolute
    ("./docs/a.md", ["a.md"], True),
    ("docs/ba.md", ["a.md"], False),  # component by component, not by characters
    ("docs/a.md", ["other/a.md"], False),
    ("Freedonia#0", ["Freedonia#1"], False),
    ("tfhub.dev/google/yamnet/1", ["https://tfhub.dev/google/yamnet/1"], True),
    ("docs/a.md", [], False),
])
def test_sources_match_by_path_suffix(source, gold, expected):
    assert M.is_gold(source, gold) is expected
    assert M.recall_at_k(["x.md", source], gold, 2) == float(expected)
    assert M.reciprocal_rank(["x.md", source], gold) == (0.5 if expected else 0.0)
