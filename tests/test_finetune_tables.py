"""QA and training sets from CSV, Parquet and Hugging Face `datasets` folders, columns mapped by name, and a
declared split honoured."""

import json

import pytest

from ragtune.choose import split_questions
from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.evaluate.qa import load_qa
from ragtune.finetune.data import load_examples

ROWS = [{"query": f"What is the capital of Land {i}?", "gold": f"City{i}",
         "split": "test" if i % 4 == 0 else "validation" if i % 4 == 1 else "train"} for i in range(12)]


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_qa_from_parquet_with_mapped_columns_keeps_the_declared_split(tmp_path):
    qa = load_qa(_parquet(tmp_path / "qa.parquet", ROWS), fields={"question": "query", "answer": "gold"})
    assert [it.question for it in qa.items][:2] == [ROWS[0]["query"], ROWS[1]["query"]]
    assert qa.items[0].answers == ["City0"] and qa.items[0].metadata == {"line": 1, "split": "test"}
    split = split_questions(qa, Settings())  # the declared split, not a seeded cut
    assert {it.metadata["split"] for it in split.test} == {"test"} and len(split.test) == 3
    assert len(split.dev) == 3 and len(split.train) == 6


def test_qa_from_csv_reads_text_booleans_and_names_bad_rows(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer,is_impossible,gold_sources\n"
                    "Who founded it?,Ann,false,docs/a.md\n"
                    "Why?,,true,\n"
                    "What?,Bob,maybe,\n")
    qa = load_qa(path)
    assert [(it.question, it.answers, it.is_impossible, it.gold_sources) for it in qa.items] == [
        ("Who founded it?", ["Ann"], False, ["docs/a.md"]), ("Why?", [], True, [])]
    assert qa.skipped == [{"line": 4, "reason": "field 'is_impossible' must be true or false (a JSON boolean), not "
                                                "'maybe'"}]


def test_jsonl_qa_honours_a_split_field(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps({"question": r["query"], "answers": [r["gold"]], "split": r["split"]})
                              for r in ROWS))
    qa = load_qa(path)
    assert len(qa.split("test").items) == 3 and len(split_questions(qa, Settings()).test) == 3


def test_a_datasets_folder_with_squad_answers_is_a_qa_set_and_its_train_split_a_training_set(tmp_path):
    from datasets import Dataset, DatasetDict

    def part(name):
        return Dataset.from_list([{"q": r["query"], "answers": {"text": [r["gold"]], "answer_start": [0]}}
                                  for r in ROWS if r["split"] == name])

    folder = tmp_path / "hf"
    DatasetDict({"train": part("train"), "test": part("test")}).save_to_disk(str(folder))
    qa = load_qa(folder, fields={"question": "q"})
    assert len(qa.items) == 9 and qa.items[0].answers == ["City2"]
    assert {it.metadata["split"] for it in qa.items} == {"train", "test"} and len(qa.split("test").items) == 3
    examples = load_examples(folder, {"question": "q", "answer": "answers"})
    assert len(examples) == 6  # the train split only: a test question is never trained on
    assert examples[0].prompt.endswith(ROWS[2]["query"])


def test_training_rows_from_parquet_with_mapped_columns(tmp_path):
    examples = load_examples(_parquet(tmp_path / "train.parquet", ROWS), {"question": "query", "answer": "gold"})
    assert len(examples) == 12 and examples[3].answer == "City3" and examples[3].line == 4


def test_a_damaged_parquet_file_is_one_line(tmp_path):
    path = tmp_path / "qa.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="qa.parquet: not a readable Parquet file"):
        load_qa(path)


def test_finetune_cli_reads_mapped_columns_before_any_model_loads(tmp_path):
    # a wrong column name fails on the rows (no question field), before the model is loaded
    import subprocess
    import sys

    path = _parquet(tmp_path / "train.parquet", ROWS)
    proc = subprocess.run([sys.executable, "-m", "ragtune.cli.main", "finetune", str(path), "--model", "nope-model",
                           "--question-field", "nope", "--answer-field", "gold", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "train.parquet:1: question: missing" in proc.stderr, proc.stderr
