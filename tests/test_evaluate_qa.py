"""QA loaders: ragtune JSONL, SQuAD-style and APIBench-style folders, and their bad inputs."""

import json

import pytest

from ragtune.errors import InputError
from ragtune.evaluate.qa import load_qa, split_ids
from ragtune.evaluate.scoring import score, strip_citations


def test_jsonl_fields_and_defaults(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join([
        json.dumps({"question": "Who?", "answers": ["Ann", "Anne"], "gold_sources": ["a.md"]}),
        "",
        json.dumps({"id": "x", "question": "Why?", "answers": [], "is_impossible": True}),
        json.dumps({"question": "When?", "answer": "1999"}),
    ]))
    qa = load_qa(path)
    assert qa.metric == "f1" and [i.id for i in qa.items] == ["1", "x", "4"]
    assert qa.items[0].gold_sources == ["a.md"] and qa.items[1].is_impossible and qa.items[2].answers == ["1999"]


@pytest.mark.parametrize("line,message", [
    ("{not json", "qa.jsonl:1: not valid JSON"),
    (json.dumps({"answers": ["a"]}), "qa.jsonl:1: field 'question'"),
    (json.dumps({"question": "q", "answers": []}), "qa.jsonl:1: field 'answers'"),
    (json.dumps(["a list"]), "qa.jsonl:1: expected a JSON object"),
])
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    (tmp_path / "qa.jsonl").write_text(line + "\n")
    with pytest.raises(InputError, match=message):
        load_qa(tmp_path / "qa.jsonl")


def test_unknown_folder_and_missing_path(tmp_path):
    with pytest.raises(InputError, match="neither SQuAD-style"):
        load_qa(tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_qa(tmp_path / "missing.jsonl")


def test_squad_mini_folder(shared_data):
    qa = load_qa(shared_data / "squad-mini")
    assert len(qa.items) == 200 and len(qa.documents) == 485
    sources = {d.source for d in qa.documents}
    assert all(it.gold_sources[0] in sources for it in qa.items)
    doc = next(d for d in qa.documents if d.source == qa.items[0].gold_sources[0])
    assert any(a in doc.text for a in qa.items[0].answers)  # SQuAD answers are spans of the gold paragraph


def test_apibench_folder(shared_data):
    qa = load_qa(shared_data / "tfhub-apibench")
    assert qa.metric == "call" and len(qa.items) == 688 and qa.system == "Answer with the TensorFlow Hub API call."
    assert {it.metadata["split"] for it in qa.items} == {"train", "validation", "test"}
    assert len(qa.split("test").items) == 69
    item = qa.items[0]
    assert item.question.startswith("I am working on a project") and "###" not in item.question
    assert item.gold_sources[0] == "tfhub.dev/google/imagenet/mobilenet_v2_100_224/feature_vector/4"
    scores = score(item, item.answers[0], False, [], "call")
    assert scores["call"] == scores["api_match"] == 1.0


def test_split_ids_marks_training_questions(tmp_path):
    qa_path = tmp_path / "qa.jsonl"
    qa_path.write_text("\n".join(json.dumps({"id": i, "question": q, "answers": ["a"]})
                                 for i, q in [("1", "Who won?"), ("2", "Where is it?")]))
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": [{"role": "user", "content": "who WON"},
                                              {"role": "assistant", "content": "a"}]}))
    assert split_ids(load_qa(qa_path), train) == {"1"}


def test_scoring_unanswerable_and_citations():
    from ragtune.evaluate.qa import QAItem

    impossible = QAItem("i", "q", [], is_impossible=True)
    assert score(impossible, "I don't know", False, [], "f1")["f1"] == 1.0
    assert score(impossible, "Paris", False, [], "f1")["f1"] == 0.0
    answerable = QAItem("a", "q", ["Paris"])
    assert score(answerable, "Paris [1][2]", False, ["Paris is nice"], "f1")["em"] == 1.0
    assert score(answerable, "Paris", True, [], "f1")["f1"] == 0.0  # abstained: the text is not an answer
    assert strip_citations("It was 1943 [1, 2].") == "It was 1943."


def _rows(path, good: int, bad: list) -> None:
    rows = [json.dumps({"question": f"Question {i}?", "answers": [f"answer {i}"]}) for i in range(good)]
    path.write_text("\n".join(rows + [b if isinstance(b, str) else json.dumps(b) for b in bad]) + "\n")


BAD_ROWS = [  # (row, the reason named)
    ({"question": "Q?", "answers": ["a"], "is_impossible": "false"}, "field 'is_impossible' must be true or false"),
    ({"question": "Q?", "answers": ["a"], "gold_sources": {"x": 1}}, "field 'gold_sources' must be a list of strings"),
    ({"question": "Q?", "answers": ["a"], "gold_sources": 5}, "field 'gold_sources' must be a list of strings (source names), not 5"),
    ({"question": "Q?", "answers": 5}, "field 'answers' must be a non-empty list"),
    ({"question": "   ", "answers": ["a"]}, "field 'question' must be a non-empty string"),
    ("{not json", "not valid JSON"),
]


def test_bad_lines_are_skipped_and_named_not_fatal(tmp_path):
    path = tmp_path / "qa.jsonl"
    _rows(path, 30, [row for row, _ in BAD_ROWS])
    qa = load_qa(path)
    assert len(qa.items) == 30 and qa.lines == 36  # the string "false" does not make a question unanswerable
    assert not any(it.is_impossible for it in qa.items)
    assert [s["line"] for s in qa.skipped] == list(range(31, 37))
    for skip, (_, reason) in zip(qa.skipped, BAD_ROWS):
        assert reason in skip["reason"], skip
    from ragtune.evaluate.qa import skipped_lines

    note = skipped_lines(qa)
    assert note[0] == "qa: 6 of 36 lines skipped (not scored; --strict refuses them):" and "line 31:" in note[1]


def test_gold_sources_as_a_string_is_one_source(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "Q?", "answers": ["a"], "gold_sources": "docs/a.md"}))
    assert load_qa(path).items[0].gold_sources == ["docs/a.md"]


def test_a_qa_file_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(json.dumps({"question": "Q?", "answers": ["x"]}).encode() + b"\n" +
                     '{"question": "Où est la crème?", "answers": ["là"]}'.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin.jsonl: not UTF-8 text \(byte 0xf9 on line 2\); re-save it as UTF-8"):
        load_qa(path)


def test_apibench_folder_with_ten_percent_broken_gold_calls_runs_on_the_rest(tmp_path):
    from ragtune.evaluate.gold import check_gold

    folder = tmp_path / "otherhub"
    folder.mkdir()
    rows = []
    for i in range(20):  # every tenth gold call is not valid Python: a positional argument after a keyword
        call = f"hub.load(handle='https://hub.example/m{i}', 1)" if i % 10 == 3 else f"hub.load('https://hub.example/m{i}')"
        rows.append({"code": f"###Instruction: load model number {i}\n###Output: x", "api_call": call,
                     "provider": "Example Hub"})
    (folder / "api_docs.jsonl").write_text("\n".join(json.dumps({"api_name": f"m{i}", "api_call": r["api_call"]})
                                                     for i, r in enumerate(rows)))
    (folder / "eval.jsonl").write_text("\n".join(map(json.dumps, rows)))
    qa = check_gold(load_qa(folder))
    assert len(qa.items) == 18 and [s["line"] for s in qa.skipped] == [4, 14]
    assert all("does not score 1 against itself under metric 'call'" in s["reason"] for s in qa.skipped)
    with pytest.raises(InputError, match=r"2 problem\(s\).*--strict refuses any"):
        check_gold(load_qa(folder), strict=True)


def test_apibench_folder_with_a_line_that_is_not_json_runs_on_the_rest(tmp_path):
    folder = tmp_path / "hub"
    folder.mkdir()
    rows = [json.dumps({"code": f"###Instruction: load model {i}\n###Output: x", "api_call": f"hub.load('m{i}')"})
            for i in range(10)]
    (folder / "api_docs.jsonl").write_text(json.dumps({"api_name": "m0", "api_call": "hub.load('m0')"}))
    (folder / "eval.jsonl").write_text("\n".join(rows[:5] + ["{cut off"] + rows[5:]))
    qa = load_qa(folder)
    assert len(qa.items) == 10 and qa.skipped[0]["line"] == 6 and "not valid JSON" in qa.skipped[0]["reason"]
    assert {it.metadata["split"] for it in qa.items} <= {"train", "validation", "test"}
