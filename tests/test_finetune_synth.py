"""`ragtune synth`: deterministic extractive QA from documents, provenance kept, duplicates removed."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ragtune.cli.main import _register, app
from ragtune.config import Settings
from ragtune.finetune.data import load_examples
from ragtune.finetune.synth import dedupe, extractive_pairs, llm_pairs, load_chunks, synthesize
from ragtune.types import Chunk

DOC_A = """# Zorblat 3000

The Zorblat 3000 kettle boils one litre of water in 95 seconds.
Its heating plate was designed by Mirela Castellanos in Valparaiso.
To descale it, fill the tank with vinegar and run the Purge cycle twice.
"""
DOC_B = """# Warranty

Every Zorblat appliance carries a warranty of 7 years from the date of purchase.
Claims are handled by the Quillfeather Service Centre in Tromso.
"""


def _docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kettle.md").write_text(DOC_A)
    (folder / "warranty.md").write_text(DOC_B)
    return folder


def test_extractive_pairs_are_grounded_and_deterministic(tmp_path):
    chunks = load_chunks(_docs(tmp_path), Settings())
    pairs = synthesize(chunks, per_chunk=3, progress=False)
    again = synthesize(load_chunks(tmp_path / "docs", Settings()), per_chunk=3, progress=False)
    assert [(p.question, p.answer) for p in pairs] == [(p.question, p.answer) for p in again]
    by_chunk = {c.id: c for c in chunks}
    for p in pairs:
        assert p.chunk_id in by_chunk and p.chunk_text == by_chunk[p.chunk_id].text
        assert p.source == by_chunk[p.chunk_id].source
        assert p.answer in p.chunk_text  # extractive: the answer is in its source chunk
    cloze = {p.answer for p in pairs if p.kind == "cloze"}
    assert {"95 seconds", "7 years"} <= cloze
    assert any(p.kind == "fact" and p.answer.startswith("Claims are handled") for p in pairs)
    assert len({p.question for p in pairs}) == len(pairs)


def test_dedupe_drops_repeated_and_near_repeated_questions():
    chunk = Chunk("c1", "a.md", "The pump delivers 40 litres per minute at full speed.", 0)
    pairs = extractive_pairs(chunk) * 2
    assert len(dedupe(pairs)) == len(pairs) // 2


def test_llm_pairs_keep_only_answers_supported_by_the_chunk():
    chunk = Chunk("c1", "a.md", "The pump delivers 40 litres per minute at full speed.", 0)

    def endpoint(messages, **kw):  # what a chat endpoint might reply: one grounded pair, one invented, noise
        assert "40 litres" in messages[-1]["content"]
        return ('{"question": "How much does the pump deliver?", "answer": "40 litres per minute"}\n'
                '{"question": "Who built the pump?", "answer": "Acme Corporation engineers"}\nnot json {')

    pairs = llm_pairs(chunk, endpoint, per_chunk=5)
    assert [(p.answer, p.kind, p.chunk_id) for p in pairs] == [("40 litres per minute", "llm", "c1")]


def test_cli_writes_a_trainable_jsonl(tmp_path):
    _register()
    out = tmp_path / "qa.jsonl"
    res = CliRunner().invoke(app, ["synth", str(_docs(tmp_path)), "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {"question", "answer", "source", "chunk_id", "chunk_text", "kind"} <= set(rows[0])
    assert len(load_examples(out)) == len(rows)  # directly usable by `ragtune finetune`
