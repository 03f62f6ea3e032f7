"""Fault suite, fuzzing (hypothesis, derandomized so CI is repeatable, a bounded number of examples): the loaders,
the chunker and the dataset parser take any input and either succeed or raise the one user-facing error type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragtune.documents import Chunker, load
from ragtune.documents.text import decode_text
from ragtune.errors import InputError
from ragtune.finetune.data import read_rows, row_to_messages
from ragtune.types import Document
from test_documents_chunking import check_invariants, words

SEEDED = settings(derandomize=True, deadline=None, max_examples=60, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# bytes that look like the start of each format, so the fuzzer reaches past the first check
_HEADS = {".txt": b"", ".md": b"# ", ".html": b"<html><body>", ".pdf": b"%PDF-1.4\n", ".docx": b"PK\x03\x04"}


@SEEDED
@given(data=st.binary(max_size=4096))
def test_decode_text_gives_text_or_an_input_error(data):
    try:
        text = decode_text(data, Path("fuzz.txt"))
    except InputError as e:
        assert str(e).startswith("fuzz.txt: ")
        return
    assert isinstance(text, str) and "\r" not in text and "\x00" not in text


@pytest.mark.parametrize("suffix", list(_HEADS))
@settings(derandomize=True, deadline=None, max_examples=25, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=2048), st.text(max_size=1024).map(lambda t: t.encode("utf-8"))))
def test_every_loader_gives_a_document_or_an_input_error(tmp_path, suffix, body):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(_HEADS[suffix] + body)
    try:
        doc = load(path)
    except InputError as e:
        assert str(e).startswith(str(path)) and "\n" not in str(e)
        return
    assert doc.text.strip() and doc.metadata["sha256"] and doc.source.endswith(suffix)


_prose = st.lists(st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300),
    st.sampled_from(["# Heading", "## Sub heading", "\n\n", "A sentence. Another one!", "x" * 500, "\t \n"]),
), max_size=12).map("".join)


@SEEDED
@given(text=_prose, limit=st.integers(8, 80), overlap_share=st.floats(0, 0.5))
def test_chunker_covers_any_text_exactly(text, limit, overlap_share):
    overlap = int(limit * overlap_share) // 2
    doc = Document("fuzz.md", text)
    chunks = Chunker(limit, overlap, count_tokens=words)(doc)
    if not text.strip():
        assert chunks == []
        return
    check_invariants(doc, chunks, limit, words)
    assert len({c.id for c in chunks}) == len(chunks)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                  max_size=4), max_leaves=12)
_row_keys = st.sampled_from(["messages", "prompt", "completion", "question", "answer", "context", "system", "text",
                             "role", "content", "instruction", "output"])
_rows = st.one_of(_json, st.dictionaries(_row_keys, _json, max_size=4),
                  st.dictionaries(_row_keys, st.text(max_size=30), max_size=4))


@SEEDED
@given(row=_rows)
def test_row_parser_gives_messages_or_a_named_problem(row):
    if not isinstance(row, dict):
        return  # non-objects are rejected one level up (see the file test below)
    try:
        messages = row_to_messages(row)
    except ValueError as e:
        field, sep, problem = str(e).partition(": ")
        assert sep and field and problem
        return
    assert messages and messages[-1]["role"] == "assistant"
    assert all(set(m) == {"role", "content"} and isinstance(m["content"], str) for m in messages)


@SEEDED
@given(rows=st.lists(_rows, max_size=6), junk=st.lists(st.binary(max_size=40), max_size=2))
def test_dataset_file_gives_examples_and_problems_with_line_numbers(tmp_path, rows, junk):
    lines = [json.dumps(r) for r in rows] + [j.decode("latin-1").replace("\n", " ") for j in junk]
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    try:
        examples, problems = read_rows(path)
    except InputError as e:
        assert str(e).startswith(str(path))
        return
    numbered = [line for line in lines if line.strip()]
    assert len(examples) + len(problems) == len(numbered)
    assert all(1 <= p.line <= len(lines) and p.field and p.message for p in problems)
