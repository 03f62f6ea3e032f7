"""`ragtune ask` (streamed, --json, closed-book) and `ragtune demo`, with tiny models built in code."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ragtune.cli import ask as ask_cli
from ragtune.cli.ask import DEMO_QUESTIONS, SAMPLE_KB
from ragtune.errors import InputError


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    ask_cli.register(app)
    return app


@pytest.fixture
def env(tiny_embedder_dir, tiny_lm_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("RAGTUNE_EMBEDDER__MODEL", str(tiny_embedder_dir))
    monkeypatch.setenv("RAGTUNE_GENERATOR__MODEL", str(tiny_lm_dir))
    monkeypatch.setenv("RAGTUNE_GENERATOR__MAX_NEW_TOKENS", "6")
    monkeypatch.setenv("RAGTUNE_RAG__MIN_RELEVANCE", "-1")  # a random embedder's similarities mean nothing
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def sample_kb(env):
    from ragtune.index.knowledge_base import KnowledgeBase

    kb = KnowledgeBase(env / "kb")
    kb.add([SAMPLE_KB])
    return env / "kb"


def test_ask_json_prints_exactly_the_documented_schema(app, sample_kb):
    result = _run(app, "ask", "How long is the warranty?", "--kb", sample_kb, "--k", "2", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"answer", "citations"} and isinstance(data["answer"], str)
    for citation in data["citations"]:
        assert set(citation) == {"n", "source", "text"} and 1 <= citation["n"] <= 2


def test_ask_streams_the_answer_then_the_citations(app, sample_kb):
    streamed = _run(app, "ask", "How do I reset the sensor?", "--kb", sample_kb)
    assert streamed.exit_code == 0, streamed.output
    data = json.loads(_run(app, "ask", "How do I reset the sensor?", "--kb", sample_kb, "--json").stdout)
    assert data["answer"].split()[0] in streamed.stdout  # greedy: the same answer both ways
    for citation in data["citations"]:
        assert f"[{citation['n']}] {citation['source']}" in streamed.stdout


def test_ask_without_a_kb_is_closed_book_with_a_note(app, env):
    result = _run(app, "ask", "What is the capital of Peru?", "--no-stream")
    assert result.exit_code == 0
    assert "closed-book" in result.stderr and "A:" in result.stdout
    data = json.loads(_run(app, "ask", "What is the capital of Peru?", "--json").stdout)
    assert data["citations"] == [] and data["answer"]


def test_ask_with_a_missing_kb_folder_is_one_clear_error(app, env):
    result = _run(app, "ask", "q", "--kb", env / "nope")
    assert isinstance(result.exception, InputError)
    assert "nope" in str(result.exception) and "ragtune ingest" in str(result.exception)
    assert not (env / "nope").exists()  # asking must not create an empty knowledge base


def test_ask_abstains_when_nothing_is_relevant(app, sample_kb, monkeypatch):
    monkeypatch.setenv("RAGTUNE_RAG__MIN_RELEVANCE", "1.01")  # no cosine similarity reaches this
    data = json.loads(_run(app, "ask", "Who won the 1998 World Cup?", "--kb", sample_kb, "--json").stdout)
    assert data == {"answer": "I could not find this in the knowledge base.", "citations": []}


def test_demo_ingests_the_sample_and_answers_three_questions(app, env):
    result = _run(app, "demo", "--kb", env / "demo")
    assert result.exit_code == 0, result.output
    for name in ("warranty.txt", "troubleshooting.md", "release-notes.html", "product-overview.md"):
        assert f"added     sample_kb/{name}" in result.stdout
    assert all(question in result.stdout for question in DEMO_QUESTIONS)
    again = _run(app, "demo", "--kb", env / "demo")  # re-running reuses what is stored
    assert again.exit_code == 0 and "unchanged sample_kb/warranty.txt" in again.stdout
