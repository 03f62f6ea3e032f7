"""The gold-vs-gold check: every question can be scored before any model runs."""

import pytest

from ragtune.errors import InputError
from ragtune.evaluate.gold import check_gold
from ragtune.evaluate.qa import QAItem, QASet


def _qa(*items, name="qa"):
    return QASet(name, list(items))


def test_check_gold_passes_and_names_failing_lines():
    ok = _qa(QAItem("1", "Load yamnet", ["hub.load('https://tfhub.dev/google/yamnet/1')"], metadata={"line": 1}))
    check_gold(ok, "call")
    bad = _qa(QAItem("1", "Load yamnet", ["hub.load('x')"], metadata={"line": 1}),
              QAItem("2", "Load a model", ["the yamnet model"], metadata={"line": 2}),
              QAItem("3", "Another", ["not a call either"], metadata={"line": 3}), name="mine")
    with pytest.raises(InputError) as e:
        check_gold(bad, "call")
    msg = str(e.value)
    assert "mine: 2 problem(s)" in msg and "line 2: gold answer 'the yamnet model' does not score 1" in msg
    assert "line 3" in msg and "line 1" not in msg and "\n" not in msg


def test_check_gold_questions_empty_or_duplicated():
    qa = _qa(QAItem("a", " ", ["x"]), QAItem("b", "Who?", ["Ann"]), QAItem("b", "What?", ["x"]),
             QAItem("c", "who", ["Ann"]), QAItem("d", "Who?", ["Bob"]))
    msg = str(pytest.raises(InputError, check_gold, qa, "f1").value)
    assert "id a: the question is empty" in msg and "id b: id 'b' is used twice" in msg
    assert "id c: the same question and answers as id b" in msg and "id d" not in msg  # other gold: allowed
    check_gold(qa, "f1", questions=False)  # only the gold answers


def test_check_gold_regex_and_json():
    check_gold(_qa(QAItem("1", "Year?", [r"^\d{4}$"])), "regex")  # a pattern need not match itself
    with pytest.raises(InputError, match="not a valid regular expression"):
        check_gold(_qa(QAItem("1", "Year?", ["(19"])), "regex")
    with pytest.raises(InputError, match="does not score 1 against itself under metric 'json'"):
        check_gold(_qa(QAItem("1", "Q?", ["{not json"])), "json")


def test_contains_gold_that_normalises_to_nothing_fails_the_check():
    with pytest.raises(InputError, match="'The' is blank once normalised"):
        check_gold(_qa(QAItem("1", "Article?", ["The"])), "contains")


@pytest.mark.parametrize("gold", ["", "   ", "the", "The.", "  a  "])
def test_blank_gold_answers_are_skipped_with_the_reason(gold):
    items = [QAItem(str(i), f"Question {i}?", [f"answer {i}"], metadata={"line": i}) for i in range(1, 10)]
    qa = check_gold(_qa(*items, QAItem("10", "Blank?", [gold], metadata={"line": 10})), "f1")
    assert [it.id for it in qa.items] == [str(i) for i in range(1, 10)]
    assert qa.skipped == [{"line": 10, "reason": f"gold answer {gold!r} is blank once normalised (case, punctuation "
                                                 "and articles dropped)"}]


def test_more_than_a_fifth_bad_is_refused_a_fifth_is_skipped():
    good = [QAItem(str(i), f"Question {i}?", [f"answer {i}"], metadata={"line": i}) for i in range(1, 9)]
    two_bad = [QAItem(str(i), f"Question {i}?", [""], metadata={"line": i}) for i in (9, 10)]
    assert len(check_gold(_qa(*good, *two_bad), "f1").items) == 8  # 2 of 10: skipped
    three_bad = two_bad + [QAItem("11", "Question 11?", ["the"], metadata={"line": 11})]
    with pytest.raises(InputError, match=r"3 of 11 lines, more than 20%"):
        check_gold(_qa(*good, *three_bad), "f1")
    with pytest.raises(InputError, match="--strict refuses any"):
        check_gold(_qa(*good, *two_bad), "f1", strict=True)
