"""The knowledge-base CLI: ingest (bad inputs among good ones), search --json, sources, remove, config."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ragtune.cli import kb as kb_cli
from ragtune.errors import InputError


@pytest.fixture(scope="module")
def app():
    app = typer.Typer()
    kb_cli.register(app)
    return app


@pytest.fixture
def env(tiny_embedder_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("RAGTUNE_EMBEDDER__MODEL", str(tiny_embedder_dir))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_bad_inputs_are_reported_per_file_and_good_files_are_kept(app, env):
    docs = env / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Zephyr\n\nThe Zephyr panel charges the battery in four hours.\n")
    (docs / "empty.txt").write_text("")
    (docs / "garbage.pdf").write_bytes(bytes(range(256)) * 20)
    (docs / "latin.txt").write_bytes(b"caf\xe9 \x81\x8d\x90\x9d r\xe9sum\xe9 \x8f")
    (docs / "notes.xyz").write_text("an unsupported format")
    bad = ["empty.txt", "garbage.pdf", "latin.txt", "notes.xyz"]
    result = _run(app, "ingest", *(docs / b for b in bad), docs / "good.md", env / "missing.md", "--kb", env / "kb")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5
    for name, line in zip(bad + ["missing.md"], errors):
        assert name in line  # each error names its file, on one line
    assert "added" in result.stdout and "good.md" in result.stdout

    listed = _run(app, "sources", "--kb", env / "kb", "--json")
    assert listed.exit_code == 0
    assert [s["source"] for s in json.loads(listed.stdout)] == [f"{docs}/good.md"]


def test_ingest_search_sources_remove_round_trip(app, env):
    (env / "a.md").write_text("The inverter resets when the red button is held for ten seconds.\n")
    (env / "b.txt").write_text("Cats sleep most of the afternoon.\n")
    assert _run(app, "ingest", "a.md", "b.txt", "--tag", "manual").exit_code == 0  # default --kb ./kb
    again = _run(app, "ingest", "a.md", "b.txt", "--json")
    assert [r["status"] for r in json.loads(again.stdout)] == ["unchanged", "unchanged"]

    found = _run(app, "search", "inverter red button", "-k", "2", "--json")
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert len(hits) == 2 and {"source", "text", "score"} <= set(hits[0])
    assert hits[0]["source"] == "a.md" and "inverter" in hits[0]["text"]
    assert isinstance(hits[0]["score"], float) and hits[0]["score"] >= hits[1]["score"]
    filtered = json.loads(_run(app, "search", "sleep", "--source", "b.txt", "--json").stdout)
    assert [h["source"] for h in filtered] == ["b.txt"]
    assert json.loads(_run(app, "search", "sleep", "--tag", "nope", "--json").stdout) == []
    plain = _run(app, "search", "inverter")
    assert plain.exit_code == 0 and "[1] a.md" in plain.stdout

    sources = json.loads(_run(app, "sources", "--json").stdout)
    assert [(s["source"], s["chunks"], s["tags"]) for s in sources] == [("a.md", 1, ["manual"]), ("b.txt", 1, ["manual"])]
    assert set(sources[0]) >= {"source", "chunks", "sha256", "added_at"}

    removed = _run(app, "remove", "a.md")
    assert removed.exit_code == 0 and "1 chunks" in removed.stdout
    assert [s["source"] for s in json.loads(_run(app, "sources", "--json").stdout)] == ["b.txt"]
    gone = _run(app, "remove", "a.md")
    assert isinstance(gone.exception, InputError) and "ragtune sources" in str(gone.exception)


def test_commands_on_a_missing_kb_say_how_to_create_one(app, env):
    result = _run(app, "sources", "--kb", env / "nowhere")
    assert isinstance(result.exception, InputError) and "ragtune ingest" in str(result.exception)
    assert not (env / "nowhere").exists()


def test_config_prints_overrides_and_saves_them(app, env):
    shown = _run(app, "config", "--kb", env / "kb", "--set", "retrieval.k=8", "--json")
    assert shown.exit_code == 0
    data = json.loads(shown.stdout)
    assert data["retrieval"]["k"] == 8 and data["embedder"]["model"].endswith("model")
    assert not (env / "kb" / "ragtune.toml").exists()
    saved = _run(app, "config", "--kb", env / "kb", "--set", "retrieval.dense_weight=0.3", "--save")
    assert saved.exit_code == 0 and "dense_weight = 0.3" in saved.stdout
    assert (env / "kb" / "ragtune.toml").read_text() == "[retrieval]\ndense_weight = 0.3\n"
    assert "dense_weight = 0.3" in _run(app, "config", "--kb", env / "kb").stdout
    bad = _run(app, "config", "--set", "retrieval.k=many")
    assert bad.exit_code != 0 and "retrieval.k" in str(bad.exception)
