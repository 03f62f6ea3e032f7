"""Rows of CSV and Parquet files and Hugging Face `datasets` folders (`save_to_disk`), for training and QA sets
alike, and the column mapping both use (``--question-field`` / ``--answer-field``).

    for number, row in read_table(Path("train.parquet")):     # (1-based row number, dict)
    row = map_fields(row, {"question": "query", "answer": "gold"})

JSON Lines is read where it always was (`finetune.data`, `evaluate.qa`), as is a training CSV (`finetune.data`,
through the documents' guarded decoder); Parquet and folders are read with their own libraries (pyarrow,
datasets). A CSV row's number is its line in the file.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ragtune.errors import InputError

_HF_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


def is_table(path: Path) -> bool:
    """A Parquet file, or a folder written by `datasets`' ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (path.is_file() and path.suffix.lower() == ".parquet") or \
        (path.is_dir() and any((path / m).is_file() for m in _HF_MARKERS))


def read_table(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, row) per row; a DatasetDict's rows carry their split's name in ``split`` (unless they
    have one), in the order train, validation, test, then any other."""
    if path.is_dir():
        yield from _read_dataset(path)
        return
    try:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow; pip install pyarrow") from None
    except Exception as e:  # pyarrow raises its own error types for a damaged or foreign file
        raise InputError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    yield from enumerate(rows, 1)


def read_csv(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) per CSV row, empty cells left out; a file that is not UTF-8 is one error naming it."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            for row in reader:
                yield reader.line_num, {k: v for k, v in row.items() if k is not None and v not in (None, "")}
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; re-save it as UTF-8") from None


def _read_dataset(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        from datasets import Dataset, load_from_disk
    except ImportError:
        raise InputError(f"{path}: reading a datasets folder needs the datasets library; pip install datasets") \
            from None
    try:
        data = load_from_disk(str(path))
    except Exception as e:  # datasets raises FileNotFoundError or its own errors for a damaged folder
        raise InputError(f"{path}: not a readable datasets folder ({type(e).__name__}: {e})") from None
    if isinstance(data, Dataset):
        yield from enumerate(data, 1)
        return
    order = {"train": 0, "validation": 1, "dev": 1, "test": 2}
    n = 0
    for split in sorted(data, key=lambda s: (order.get(s, 3), s)):
        for row in data[split]:
            n += 1
            yield n, {**row, "split": row.get("split") or split}


def column_map(question: str | None, answer: str | None) -> dict[str, str]:
    """``--question-field`` / ``--answer-field`` as the mapping `map_fields` takes (the flags not given left out)."""
    return {k: v for k, v in (("question", question), ("answer", answer)) if v}


def map_fields(row: dict[str, Any], fields: dict[str, str] | None, one_answer: bool = False) -> dict[str, Any]:
    """The row with the named columns under the names ragtune reads (``{"question": "query"}`` reads the
    ``query`` column as the question); a column that is absent leaves the row as it is. A Hugging Face
    SQuAD-style answers cell (``{"text": [...], "answer_start": [...]}``) becomes its list of texts, and with
    ``one_answer`` (a training row) a list of answers its first."""
    out = dict(row)
    for target, column in (fields or {}).items():
        if column and column in out and column != target:
            out[target] = out.pop(column)
    for key in ("answers", "answer"):
        value = out.get(key)
        if isinstance(value, dict) and isinstance(value.get("text"), list):
            value = out[key] = value["text"]
        if one_answer and isinstance(value, list) and value and isinstance(value[0], str):
            out[key] = value[0]
    return out
