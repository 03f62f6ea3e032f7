"""Dataset reading: every accepted schema, bad rows named with their line, seeded splits."""

from __future__ import annotations

import json

import pytest

from ragtune.errors import InputError
from ragtune.finetune.data import dataset_hash, load_examples, read_rows, split_examples


def _jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_every_schema_becomes_chat_messages(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        {"prompt": "2+2?", "completion": "4", "system": "be brief"},
        {"question": "capital of France?", "answer": "Paris", "context": "France is a country."},
    ])
    ex = load_examples(path)
    assert [e.answer for e in ex] == ["hello", "4", "Paris"]
    assert ex[1].messages[0] == {"role": "system", "content": "be brief"}
    assert ex[2].messages[-2]["content"] == "France is a country.\n\ncapital of France?"
    assert [e.line for e in ex] == [1, 2, 3]


def test_csv_rows_and_line_numbers(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("question,answer\nwho?,me\n\"multi\nline?\",yes\nno answer,\n")
    examples, problems = read_rows(path)
    assert [e.answer for e in examples] == ["me", "yes"]
    assert len(problems) == 1 and problems[0].field == "answer" and problems[0].line == 5


def test_bad_rows_are_reported_with_lines_never_dropped(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [
        {"question": "ok?", "answer": "yes"},
        '{"question": "broken", "answer": ',
        {"question": "no answer here"},
        ["not", "an", "object"],
        {"messages": [{"role": "user", "content": "last turn is not the answer"}]},
        {"title": "unknown schema"},
    ])
    examples, problems = read_rows(path)
    assert len(examples) == 1
    found = {(p.line, p.field) for p in problems}
    assert found == {(2, "json"), (3, "answer"), (4, "row"), (5, "messages"), (6, "row")}
    with pytest.raises(InputError, match=r"d\.jsonl:2: json: .*and 4 more"):
        load_examples(path)


def test_documents_folder_is_raw_text(tmp_path):
    (tmp_path / "a.md").write_text("# Title\nSome text.")
    (tmp_path / "b.txt").write_text("More text.")
    ex = load_examples(tmp_path)
    assert [e.text for e in ex] == ["# Title\nSome text.", "More text."]
    assert all(e.messages == [] for e in ex)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_examples(tmp_path / "nope.jsonl")


def test_split_is_seeded_and_disjoint(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(50)])
    ex = load_examples(path)
    train, val = split_examples(ex, 0.2, seed=3)
    again, val_again = split_examples(ex, 0.2, seed=3)
    other, _ = split_examples(ex, 0.2, seed=4)
    assert len(val) == 10 and len(train) == 40
    assert [e.answer for e in val] == [e.answer for e in val_again]
    assert {e.answer for e in train} != {e.answer for e in other}
    assert not {e.line for e in train} & {e.line for e in val}
    assert dataset_hash(train) == dataset_hash(again) != dataset_hash(other)
