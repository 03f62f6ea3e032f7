"""Fine-tuning datasets: read JSONL/CSV/raw documents into examples, split them, and name every bad row.

Accepted rows (one JSON object per line, or one CSV row with a header):
  {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}
  {"prompt": "...", "completion": "..."}        (optional "system")
  {"question": "...", "answer": "..."}          (optional "context", put before the question)
Plain documents (.txt, .md, .rst, or a folder of them) become raw text for continued pre-training.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ragtune.errors import InputError
from ragtune.finetune.tables import is_table, map_fields, read_table
from ragtune.types import Example

TABLE_SUFFIXES = {".jsonl", ".json", ".csv", ".parquet"}
TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
ROLES = {"system", "user", "assistant"}
MAX_DATASET_MB = 2048  # one dataset file is read whole; beyond this, split it


@dataclass
class RowProblem:
    """A row that cannot be used, with the reason; reported, never silently dropped."""

    source: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.field}: {self.message}"


def row_to_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """A dataset row in any accepted schema → chat messages; ValueError('field: problem') when unusable."""
    if "messages" in row:
        msgs = row["messages"]
        if isinstance(msgs, str):  # CSV cells hold JSON text
            try:
                msgs = json.loads(msgs)
            except json.JSONDecodeError:
                raise ValueError("messages: not a JSON list of {role, content}") from None
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("messages: expected a non-empty list of {role, content}")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(f"messages[{i}]: expected {{role: system|user|assistant, content: text}}")
            out.append({"role": m["role"], "content": m["content"]})
        if out[-1]["role"] != "assistant":
            raise ValueError("messages: the last message must be the assistant's answer")
        return out
    for q_key, a_key in (("prompt", "completion"), ("question", "answer"), ("instruction", "output")):
        if q_key in row or a_key in row:
            for key in (q_key, a_key):
                if key not in row or row[key] is None:
                    raise ValueError(f"{key}: missing (rows with '{q_key}' need '{a_key}' too)")
                if not isinstance(row[key], (str, int, float)):
                    raise ValueError(f"{key}: expected text, got {type(row[key]).__name__}")
            user = str(row[q_key])
            if row.get("context"):
                user = f"{row['context']}\n\n{user}"
            msgs = [{"role": "system", "content": str(row["system"])}] if row.get("system") else []
            return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": str(row[a_key])}]
    if "text" in row and isinstance(row["text"], str):
        raise ValueError("text: raw-text rows belong in .txt/.md files; rows need messages, prompt/completion "
                         "or question/answer")
    raise ValueError(f"row: no known fields (found {sorted(row)[:6]}); expected messages, prompt/completion "
                     "or question/answer")


def read_rows(path: str | Path, fields: dict[str, str] | None = None) -> tuple[list[Example], list[RowProblem]]:
    """Every usable example of a file or folder, and every row that is not (with its line number). ``fields``
    maps other column names to the ones read (``{"question": "query", "answer": "gold"}``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; pass a .jsonl/.csv/.parquet dataset, a datasets "
                         "folder or a folder of .txt/.md")
    examples: list[Example] = []
    problems: list[RowProblem] = []
    if is_table(path) and path.is_dir():  # a datasets folder (save_to_disk): its train split when it has one
        rows = list(read_table(path))
        train = [(n, r) for n, r in rows if r.get("split") == "train"]
        for n, row in train or rows:
            _add_row(map_fields(row, fields, one_answer=True), path, n, examples, problems)
        return examples, problems
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES | TABLE_SUFFIXES)
        if not files:
            raise InputError(f"{path}: no .jsonl, .csv, .txt or .md files inside")
    else:
        files = [path]
    for f in files:
        suffix = f.suffix.lower()
        if suffix in (".jsonl", ".json"):
            _read_jsonl(f, examples, problems, fields)
        elif suffix == ".csv":
            _read_csv(f, examples, problems, fields)
        elif suffix == ".parquet":
            for n, row in read_table(f):
                _add_row(map_fields(row, fields, one_answer=True), f, n, examples, problems)
        elif suffix in TEXT_SUFFIXES:
            text = _read_text(f)
            if text.strip():
                examples.append(Example(text=text, source=str(f)))
            else:
                problems.append(RowProblem(str(f), 0, "text", "empty document"))
        else:
            raise InputError(f"{f}: unsupported dataset format '{suffix}'; use .jsonl, .csv, .parquet, .txt or .md")
    return examples, problems


def _read_text(f: Path) -> str:
    """A dataset file's text through the documents' guarded read and decoder: never a FIFO or a device,
    a byte-order mark honoured, binary content refused with the file named."""
    from ragtune.documents.files import read_bytes
    from ragtune.documents.text import decode_text

    return decode_text(read_bytes(f, MAX_DATASET_MB), f)


def _read_jsonl(f: Path, examples: list[Example], problems: list[RowProblem], fields: dict[str, str] | None) -> None:
    text = _read_text(f)
    if f.suffix.lower() == ".json" and text.lstrip().startswith("["):  # a JSON array of rows
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            problems.append(RowProblem(str(f), e.lineno, "json", f"not valid JSON ({e.msg})"))
            return
        lines: Iterable[tuple[int, Any]] = ((i + 1, r) for i, r in enumerate(rows))
    else:
        lines = _json_lines(f, text, problems)
    for lineno, row in lines:
        _add_row(map_fields(row, fields) if isinstance(row, dict) and fields else row, f, lineno, examples, problems)


def _json_lines(f: Path, text: str, problems: list[RowProblem]) -> Iterable[tuple[int, Any]]:
    # "\n" only: splitlines() also breaks at \v, \f and U+2028, which JSON strings may hold raw
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(RowProblem(str(f), lineno, "json", f"not valid JSON ({e.msg} at column {e.colno})"))


def _read_csv(f: Path, examples: list[Example], problems: list[RowProblem], fields: dict[str, str] | None) -> None:
    with io.StringIO(_read_text(f), newline="") as fh:
        reader = csv.DictReader(fh)
        for row in reader:
            row = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            _add_row(map_fields(row, fields, one_answer=True), f, reader.line_num, examples, problems)


def _add_row(row: Any, f: Path, lineno: int, examples: list[Example], problems: list[RowProblem]) -> None:
    if not isinstance(row, dict):
        problems.append(RowProblem(str(f), lineno, "row", f"expected a JSON object, got {type(row).__name__}"))
        return
    try:
        examples.append(Example(messages=row_to_messages(row), source=str(f), line=lineno,
                                gold_source=_gold_source(row)))
    except ValueError as e:
        field_name, _, message = str(e).partition(": ")
        problems.append(RowProblem(str(f), lineno, field_name, message))


def _gold_source(row: dict[str, Any]) -> str | None:
    gold = row.get("gold_sources") or row.get("gold_source") or row.get("source")
    if isinstance(gold, list):
        gold = gold[0] if gold else None
    return str(gold) if isinstance(gold, (str, int)) and str(gold).strip() else None


def load_examples(path: str | Path, fields: dict[str, str] | None = None) -> list[Example]:
    """The examples of a dataset (``fields``: see `read_rows`); raises InputError naming the first bad row (run
    `ragtune data check`)."""
    examples, problems = read_rows(path, fields)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(f"{problems[0]}{more}; fix the rows or run `ragtune data check {path}` for the full list")
    if not examples:
        raise InputError(f"{path}: no examples; expected messages, prompt/completion or question/answer rows")
    kinds = {e.text is None for e in examples}
    if len(kinds) > 1:
        raise InputError(f"{path}: mixes raw documents with instruction rows; train on one kind at a time")
    return examples


def split_examples(examples: list[Example], validation_fraction: float, seed: int = 0
                   ) -> tuple[list[Example], list[Example]]:
    """A seeded shuffle-and-cut into (train, validation); at least one validation example when possible."""
    if not 0 <= validation_fraction < 1:
        raise InputError(f"validation_fraction={validation_fraction}: use a value in [0, 1)")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = round(len(examples) * validation_fraction)
    if validation_fraction > 0 and len(examples) >= 2:
        n_val = max(1, n_val)
    val = [examples[i] for i in sorted(order[:n_val])]
    train = [examples[i] for i in sorted(order[n_val:])]
    return train, val


def dataset_hash(examples: list[Example]) -> str:
    """A short content hash of the examples (recorded in the model card and checked on resume)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.messages, e.text], ensure_ascii=False, sort_keys=True).encode())
    return h.hexdigest()[:16]


T = TypeVar("T")


def seeded_sample(items: list[T], budget: int, seed: int) -> list[T]:
    """At most ``budget`` items (0: all), a seeded sample kept in the original order."""
    if budget <= 0 or len(items) <= budget:
        return items
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), budget))]
