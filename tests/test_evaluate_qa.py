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
