"""Fault suite, search syntax: questions carrying full-text query-language characters are plain words on
both stores (LanceDB read a quoted question as a phrase query and crashed: its index keeps no positions)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from _faults_util import DOCS, HashEmbedder, settings
from ragtune.index.knowledge_base import KnowledgeBase

HOSTILE = [
    '"how long is the zephyr battery warranty?"',
    '"zephyr',
    "zephyr AND warranty OR NOT cats",
    "+zephyr -warranty !cats && || (battery) {years} [twelve] ^2 ~1 * ? : \\ /",
    "warranty:years zephyr~ battery^3 \"twelve years\"~2",
    "o'brien's zephyr's <-> & | !!",
    "'",
    "))(( \"\" :",
]


@pytest.fixture(params=["lancedb", "postgres"])
def kb(request, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    target = tmp_path / "kb" if request.param == "lancedb" else request.getfixturevalue("pg_url")
    kb = KnowledgeBase(target, settings(), embedder=HashEmbedder())
    kb.add([folder], progress=False)
    return kb


@pytest.mark.parametrize("question", HOSTILE)
def test_query_language_characters_are_plain_words_on_both_stores(kb, question):
    for mode in ("hybrid", "lexical", "dense"):
        kb.search(question, k=3, mode=mode)  # no exception on any of them
    if "zephyr" in question.lower():
        assert kb.search(question, k=1, mode="lexical")[0].source.endswith("zephyr.md")


def test_a_quoted_question_finds_what_its_words_find(kb):
    plain = [h.id for h in kb.search("zephyr battery warranty", k=3, mode="lexical")]
    quoted = [h.id for h in kb.search('"zephyr battery warranty"', k=3, mode="lexical")]
    assert plain and quoted == plain


def test_cli_search_of_a_quoted_question_answers(tmp_path, monkeypatch):
    from ragtune.cli.main import _register, app

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    KnowledgeBase(tmp_path / "kb", settings(), embedder=HashEmbedder()).add([folder], progress=False)
    monkeypatch.setattr("ragtune.index.knowledge_base.make_embedder", lambda settings: HashEmbedder())
    _register()
    result = CliRunner().invoke(app, ["search", '"how long is the zephyr warranty?"', "--kb", str(tmp_path / "kb")])
    assert result.exit_code == 0, result.output
    assert "zephyr.md" in result.output
