"""The named metrics against hand-computed cases, the metric registry, inference and the gold-vs-gold check."""

import json
import sys

import pytest

from ragtune.errors import InputError
from ragtune.evaluate import scorers as S
from ragtune.evaluate.qa import QAItem, QASet, load_qa


@pytest.mark.parametrize("name,prediction,answers,expected", [
    ("exact", " Paris\n", ["Paris"], 1.0),
    ("exact", "paris", ["Paris"], 0.0),  # case matters
    ("exact", "The Paris", ["Paris"], 0.0),
    ("normalized", "the Paris!", ["paris"], 1.0),  # SQuAD normalisation (today's EM)
    ("contains", "It is Paris, France.", ["Paris"], 1.0),
    ("f1", "in 1943 radio", ["1943"], 0.5),  # P = 1/3, R = 1
    ("rouge_l", "x y z q", ["w x y z"], 0.75),  # LCS 3 of 4 and 4
    ("regex", "It was built in 1889.", [r"\b18\d\d\b"], 1.0),  # re.search: found inside the answer
    ("regex", "It was built in 1889.", [r"^\d{4}$"], 0.0),  # anchored: a full match is asked for
    ("regex", "1889", [r"^\d{4}$", "x"], 1.0),
    ("regex", "anything", [], 0.0),
    ("json", '{"a": 1, "b": [1, 2]}', ['{"b": [1, 2], "a": 1}'], 1.0),  # key order ignored
    ("json", 'Here you go: {"name": "Ann", "age": 30, "city": "Oslo"} done', ['{"name": "Ann", "age": 30}'], 1.0),
    ("json", '{"name": "Ann"}', ['{"name": "Ann", "age": 30}'], 0.0),  # a gold key missing
    ("json", '{"a": {"b": 1, "c": 2}}', ['{"a": {"b": 1}}'], 1.0),  # nested subset
    ("json", '{"a": 1.0}', ['{"a": 1}'], 1.0),  # 1 == 1.0
    ("json", '{"a": true}', ['{"a": 1}'], 0.0),  # true is not 1
    ("json", '[1, 2]', ['[2, 1]'], 0.0),  # arrays keep their order
    ("json", "```json\n[1, 2]\n```", ['[1, 2]'], 1.0),
    ("json", "no json", ['{"a": 1}'], 0.0),
    ("call", "model = hub.load('tfhub.dev/google/yamnet/1')", ["hub.load('https://tfhub.dev/google/yamnet/1')"], 1.0),
    ("call", "torch.hub.load('pytorch/vision', 'resnet50', pretrained=True)",
     ["torch.hub.load(repo_or_dir='pytorch/vision', model='resnet50', pretrained=True)"], 1.0),
    ("call", "hub.load('x')", ["hub.KerasLayer('x')", "hub.load('x')"], 1.0),  # max over gold answers
    ("choice", "B", ["B"], 1.0),
    ("choice", "(b)", ["B"], 1.0),
    ("choice", "The answer is C because ...", ["C"], 1.0),
    ("choice", "B) Paris", ["B"], 1.0),
    ("choice", "B) Paris", ["Paris"], 1.0),  # gold given as the option text
    ("choice", "A dog is an animal", ["A"], 0.0),  # the article "A" is no choice
    ("choice", "C", ["B"], 0.0),
    ("choice", "I am not sure", ["B"], 0.0),
])
def test_metric_by_hand(name, prediction, answers, expected):
    assert S.get_metric(name)(prediction, answers) == pytest.approx(expected)


def test_every_metric_is_bounded_and_zero_without_gold():
    for name, fn in S.METRICS.items():
        assert fn("anything at all", []) == 0.0, name
        assert 0.0 <= fn("hub.load('x') {\"a\": 1} B", ["B"]) <= 1.0, name


def test_unknown_metric_lists_the_names():
    with pytest.raises(InputError, match=r"unknown metric 'bleu'; use one of exact, normalized, .*call, choice"):
        S.get_metric("bleu")


def test_bad_regex_is_a_clear_error():
    with pytest.raises(InputError, match=r"not a valid regular expression"):
        S.get_metric("regex")("x", ["(unclosed"])


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_scorers.py").write_text(
        "def first_word(prediction, answers):\n"
        "    return float(prediction.split()[:1] == [a.split()[0] for a in answers][:1])\n"
        "def wrong_signature(prediction):\n    return 1.0\n"
        "def out_of_range(prediction, answers):\n    return 2\n"
        "def broken(prediction, answers):\n    raise KeyError('oops')\n"
        "NOT_CALLABLE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_scorers"
    sys.modules.pop("my_scorers", None)
    S._custom.cache_clear()


def test_custom_scorer_imported(user_module):
    fn = S.get_metric(f"{user_module}:first_word")
    assert fn("Paris is big", ["Paris France"]) == 1.0 and fn("Rome", ["Paris"]) == 0.0


@pytest.mark.parametrize("spec,message", [
    ("no_such_module_xyz:f", r"cannot import 'no_such_module_xyz' \(ModuleNotFoundError"),
    ("my_scorers:missing", r"module 'my_scorers' has no function 'missing'"),
    ("my_scorers:NOT_CALLABLE", r"has no function 'NOT_CALLABLE'"),
    ("my_scorers:wrong_signature", r"wrong_signature\(prediction\) must take \(prediction: str, answers"),
    ("my_scorers:", r"package.module:function"),
])
def test_custom_scorer_errors(user_module, spec, message):
    with pytest.raises(InputError, match=message):
        S.get_metric(spec)


def test_custom_scorer_results_checked(user_module):
    with pytest.raises(InputError, match=r"returned 2; a scorer must return a number in \[0, 1\]"):
        S.get_metric("my_scorers:out_of_range")("x", ["y"])
    with pytest.raises(InputError, match=r"my_scorers:broken' failed on prediction 'x': KeyError"):
        S.get_metric("my_scorers:broken")("x", ["y"])


@pytest.mark.parametrize("answers,choices,name,reason", [
    ([["hub.load('a')"], ["torch.hub.load(repo_or_dir='r', model='m')"]], False, "call", "all 2 gold answers are Python calls"),
    ([['{"a": 1}'], ["[1, 2]"]], False, "json", "JSON"),
    ([["A"], ["C", "D"]], True, "choice", "option letters and the questions list choices"),
    ([["Denver Broncos"], ["1943", "October 1943"]], False, "f1", "short (median 2 words)"),
    ([[" ".join(["word"] * 20)]], False, "rouge_l", "long (median 20 words)"),
    ([["hub.load('a')"], ["Paris"]], False, "f1", "short"),  # not all calls
    ([[]], False, "f1", "no gold answers"),
])
def test_infer_metric(answers, choices, name, reason):
    got, why = S.infer_metric(answers, choices)
    assert got == name and reason in why


def _qa(*items, name="qa"):
    return QASet(name, list(items))


def test_check_gold_passes_and_names_failing_lines():
    ok = _qa(QAItem("1", "Load yamnet", ["hub.load('https://tfhub.dev/google/yamnet/1')"], metadata={"line": 1}))
    S.check_gold(ok, "call")
    bad = _qa(QAItem("1", "Load yamnet", ["hub.load('x')"], metadata={"line": 1}),
              QAItem("2", "Load a model", ["the yamnet model"], metadata={"line": 2}),
              QAItem("3", "Another", ["not a call either"], metadata={"line": 3}), name="mine")
    with pytest.raises(InputError) as e:
        S.check_gold(bad, "call")
    msg = str(e.value)
    assert "mine: 2 problem(s)" in msg and "line 2: gold answer 'the yamnet model' does not score 1" in msg
    assert "line 3" in msg and "line 1" not in msg and "\n" not in msg


def test_check_gold_questions_empty_or_duplicated():
    qa = _qa(QAItem("a", " ", ["x"]), QAItem("b", "Who?", ["Ann"]), QAItem("b", "What?", ["x"]),
             QAItem("c", "who", ["Ann"]), QAItem("d", "Who?", ["Bob"]))
    msg = str(pytest.raises(InputError, S.check_gold, qa, "f1").value)
    assert "id a: the question is empty" in msg and "id b: id 'b' is used twice" in msg
    assert "id c: the same question and answers as id b" in msg and "id d" not in msg  # other gold: allowed
    S.check_gold(qa, "f1", questions=False)  # only the gold answers


def test_check_gold_regex_and_json():
    S.check_gold(_qa(QAItem("1", "Year?", [r"^\d{4}$"])), "regex")  # a pattern need not match itself
    with pytest.raises(InputError, match="not a valid regular expression"):
        S.check_gold(_qa(QAItem("1", "Year?", ["(19"])), "regex")
    with pytest.raises(InputError, match="does not score 1 against itself under metric 'json'"):
        S.check_gold(_qa(QAItem("1", "Q?", ["{not json"])), "json")


def test_contains_gold_that_normalises_to_nothing_fails_the_check():
    with pytest.raises(InputError, match="'The' is blank once normalised"):
        S.check_gold(_qa(QAItem("1", "Article?", ["The"])), "contains")


def test_jsonl_metric_declared_inferred_and_overridden(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"question": "Q1?", "answers": ['{"a": 1}'], "metric": "json"}, {"question": "Q2?", "answers": ["[1]"]}]
    path.write_text("\n".join(map(json.dumps, rows)))
    qa = load_qa(path)
    assert (qa.metric, qa.metric_reason) == ("json", "declared on line 1 of qa.jsonl")
    assert load_qa(path, metric="exact").metric == "exact"
    with pytest.raises(InputError, match="unknown metric 'nope'"):
        load_qa(path, metric="nope")
    path.write_text("\n".join(map(json.dumps, rows + [{"question": "Q3?", "answers": ["x"], "metric": "f1"}])))
    with pytest.raises(InputError, match=r"qa.jsonl:3: metric 'f1' differs from 'json' on line 1"):
        load_qa(path)
    path.write_text(json.dumps({"question": "Q?", "answers": ["x"], "metric": "bleu"}))
    with pytest.raises(InputError, match=r"qa.jsonl:1: field 'metric': unknown metric 'bleu'"):
        load_qa(path)
    path.write_text(json.dumps({"question": "Q?", "answers": ["hub.load('x')"]}))
    assert load_qa(path).metric == "call" and "Python calls" in load_qa(path).metric_reason


def test_jsonl_choices(tmp_path):
    path = tmp_path / "mc.jsonl"
    path.write_text(json.dumps({"question": "Capital of France?", "choices": ["Rome", "Paris"], "answers": ["Paris"]}))
    qa = load_qa(path)
    item = qa.items[0]
    assert item.question == "Capital of France?\nA. Rome\nB. Paris" and item.answers == ["Paris", "B"]
    assert S.choice("B", item.answers) == 1.0 and S.choice("(A)", item.answers) == 0.0
    path.write_text(json.dumps({"question": "Q?", "choices": "AB", "answers": ["A"]}))
    with pytest.raises(InputError, match=r"mc.jsonl:1: field 'choices' must be a list"):
        load_qa(path)


def test_answers_logged_before_the_metric_get_its_scores_on_resume():
    from ragtune.evaluate.scoring import summarise

    gold = ["hub.load('https://tfhub.dev/google/yamnet/1')"]
    old = {"em": 0.0, "f1": 0.0, "contains": 0.0, "rouge_l": 0.0, "api_match": 0.0, "abstained": False,
           "groundedness": None}  # scored by the URL-only API match of earlier versions
    records = [{"id": "1", "answers": gold, "prediction": "hub.load('tfhub.dev/google/yamnet/1')", "scores": dict(old),
                "latency_s": 0.1}]
    summary = summarise(records, "call")
    assert summary["score"] == summary["call"] == summary["api_match"] == 1.0
    assert records[0]["scores"]["call"] == 1.0


@pytest.mark.parametrize("gold", ["", "   ", "the", "The.", "  a  "])
def test_blank_gold_answers_are_skipped_with_the_reason(gold):
    items = [QAItem(str(i), f"Question {i}?", [f"answer {i}"], metadata={"line": i}) for i in range(1, 10)]
    qa = S.check_gold(_qa(*items, QAItem("10", "Blank?", [gold], metadata={"line": 10})), "f1")
    assert [it.id for it in qa.items] == [str(i) for i in range(1, 10)]
    assert qa.skipped == [{"line": 10, "reason": f"gold answer {gold!r} is blank once normalised (case, punctuation "
                                                 "and articles dropped)"}]


def test_more_than_a_fifth_bad_is_refused_a_fifth_is_skipped():
    good = [QAItem(str(i), f"Question {i}?", [f"answer {i}"], metadata={"line": i}) for i in range(1, 9)]
    two_bad = [QAItem(str(i), f"Question {i}?", [""], metadata={"line": i}) for i in (9, 10)]
    assert len(S.check_gold(_qa(*good, *two_bad), "f1").items) == 8  # 2 of 10: skipped
    three_bad = two_bad + [QAItem("11", "Question 11?", ["the"], metadata={"line": 11})]
    with pytest.raises(InputError, match=r"3 of 11 lines, more than 20%"):
        S.check_gold(_qa(*good, *three_bad), "f1")
    with pytest.raises(InputError, match="--strict refuses any"):
        S.check_gold(_qa(*good, *two_bad), "f1", strict=True)
