"""A knowledge base in PostgreSQL: the same ingest / search / remove as a folder, atomic batches,
selection by URL or store.url, passwords never shown, the CLI on a database URL."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from ragtune.config import load_settings
from ragtune.errors import ConfigError
from ragtune.index.embedders import SentenceTransformerEmbedder
from ragtune.index.knowledge_base import KnowledgeBase
from ragtune.index.stores import redact


@pytest.fixture(scope="module")
def tiny(tiny_embedder_dir):
    return SentenceTransformerEmbedder(str(tiny_embedder_dir))


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "solar.md").write_text("# Solar\n\nThe Zephyr panel charges the battery in four hours.\n\n"
                                     "Reset the inverter by holding the red button for ten seconds.\n")
    (folder / "cats.txt").write_text("Cats sleep for most of the afternoon and hunt at dusk.\n")
    (folder / "warranty.txt").write_text("The Zephyr battery warranty lasts twelve years.\n")
    return folder


def test_ingest_search_remove_and_reopen(pg_url, docs, tiny, tmp_path):
    kb = KnowledgeBase(pg_url, settings=load_settings(None), embedder=tiny)
    assert kb.path is None and len(kb) == 0
    report = kb.add([docs])
    assert sorted(i.status for i in report) == ["added"] * 3 and report.embedded == len(kb)
    assert kb.add([docs]).unchanged and len(kb.add([docs]).unchanged) == 3
    for mode in ("hybrid", "dense", "lexical"):
        assert kb.search("warranty years", k=2, mode=mode)
    top = kb.search("How long is the battery warranty?", k=1)[0]
    assert top.source.endswith("warranty.txt") and top.metadata["lexical_score"] > 0
    assert {h.source for h in kb.search("battery", k=5, where={"source": top.source})} == {top.source}
    (docs / "cats.txt").write_text("Dogs bark at the postman.\n")
    assert [i.status for i in kb.add([docs / "cats.txt"])] == ["updated"]
    assert kb.remove(f"{docs}/solar.md") >= 1
    again = KnowledgeBase(pg_url, settings=load_settings(None), embedder=tiny)  # a second process's view
    assert sorted(s.source for s in again.sources()) == [f"{docs}/cats.txt", f"{docs}/warranty.txt"]
    assert [c.text for c in again.store.chunks() if "cats" in c.source] == ["Dogs bark at the postman."]
    assert len(again) == sum(s.chunks for s in again.sources())


def test_a_failing_batch_leaves_store_and_manifest_unchanged(pg_url, docs, tiny, monkeypatch):
    kb = KnowledgeBase(pg_url, settings=load_settings(None), embedder=tiny)
    kb.add([docs / "cats.txt"])
    before = (len(kb), [s.source for s in kb.sources()])

    def broken(source, keep_version=None):  # after the upsert, inside the batch's transaction
        raise RuntimeError("disk full")

    monkeypatch.setattr(kb.store, "delete", broken)
    with pytest.raises(RuntimeError):
        kb.add([docs / "solar.md", docs / "warranty.txt"])
    fresh = KnowledgeBase(pg_url, settings=load_settings(None), embedder=tiny)
    assert (len(fresh), [s.source for s in fresh.sources()]) == before


def test_store_url_in_the_folder_settings_selects_the_database(pg_url, docs, tiny, tmp_path):
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "ragtune.toml").write_text(f'[store]\nurl = "{pg_url}"\n')
    kb = KnowledgeBase(folder, embedder=tiny)
    kb.add([docs / "cats.txt"])
    assert not (folder / "manifest.json").exists() and not (folder / "lance").exists()
    assert len(KnowledgeBase(pg_url, settings=load_settings(None), embedder=tiny).sources()) == 1


def test_passwords_are_never_shown(monkeypatch):
    assert redact("postgresql://ann:s3cret@db.example/kb") == "postgresql://ann:***@db.example/kb"
    assert "s3cret" not in redact("postgresql://ann@db/kb?password=s3cret&sslmode=require")
    monkeypatch.setenv("PGPASSWORD", "s3cret")
    with pytest.raises(ConfigError) as e:
        KnowledgeBase("postgresql://ann:s3cret@/kb?host=/nonexistent-socket-dir", settings=load_settings(None))
    assert "cannot connect" in str(e.value) and "s3cret" not in str(e.value)


def test_cli_ingest_search_sources_on_a_database_url(pg_url, docs, tiny_embedder_dir, monkeypatch, tmp_path):
    from ragtune.cli import kb as kb_cli

    app = typer.Typer()
    kb_cli.register(app)
    monkeypatch.setenv("RAGTUNE_EMBEDDER__MODEL", str(tiny_embedder_dir))
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke
    missing = run(app, ["sources", "--kb", pg_url])
    assert missing.exit_code == 1 and "no knowledge base in this database" in str(missing.exception)
    out = run(app, ["ingest", str(docs), "--kb", pg_url])
    assert out.exit_code == 0, out.output
    assert "3 added" in out.output and redact(pg_url) in out.output
    hits = json.loads(run(app, ["search", "battery warranty", "--kb", pg_url, "--json"]).output)
    assert hits[0]["source"].endswith("warranty.txt")
    assert len(json.loads(run(app, ["sources", "--kb", pg_url, "--json"]).output)) == 3
    assert not (tmp_path / "kb").exists()  # nothing written to a folder


def test_migrate_copies_an_embedded_kb_with_its_vectors(pg_url, docs, tiny_embedder_dir, monkeypatch, tmp_path):
    from ragtune.cli import kb as kb_cli

    app = typer.Typer()
    kb_cli.register(app)
    monkeypatch.setenv("RAGTUNE_EMBEDDER__MODEL", str(tiny_embedder_dir))
    run = CliRunner().invoke
    folder = tmp_path / "kb"
    assert run(app, ["ingest", str(docs), "--kb", str(folder)]).exit_code == 0
    out = run(app, ["kb", "migrate", str(folder), pg_url, "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["sources"] == 3 and report["embedded"] == 0  # vectors came from the folder, not re-embedded
    settings = load_settings(None, {"embedder.model": str(tiny_embedder_dir)})
    src, dst = KnowledgeBase(folder, settings=settings), KnowledgeBase(pg_url, settings=settings)
    assert report["chunks"] == len(src) == len(dst)
    assert [(c.id, c.text) for c in src.store.chunks()] == [(c.id, c.text) for c in dst.store.chunks()]
    assert [(s.source, s.sha256, s.chunks) for s in src.sources()] == [(s.source, s.sha256, s.chunks) for s in dst.sources()]
    query = "How long is the battery warranty?"
    assert [(h.id, round(h.score, 4)) for h in src.search(query, mode="dense")] == \
        [(h.id, round(h.score, 4)) for h in dst.search(query, mode="dense")]
    assert run(app, ["kb", "migrate", str(folder), pg_url]).exit_code == 0  # again: nothing duplicated
    assert len(KnowledgeBase(pg_url, settings=settings)) == len(src)


def test_two_ingest_processes_into_one_database_both_finish(pg_url, tiny_embedder_dir, tmp_path):
    import os
    import subprocess
    import sys

    folders = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(6):
            (folder / f"{name}{i}.txt").write_text(f"Document {name}{i}: the Zephyr unit {i} of team {name} "
                                                   f"charges in {i + 1} hours.\n")
        folders.append(folder)
    shared = tmp_path / "shared.md"
    shared.write_text("# Shared\n\nBoth writers ingest this file; it must be stored once.\n")
    env = os.environ | {"RAGTUNE_EMBEDDER__MODEL": str(tiny_embedder_dir), "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-m", "ragtune.cli.main", "ingest", str(f), str(shared),
                               "--kb", pg_url, "--json"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for f in folders]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    reports = [json.loads(out) for out, _ in outputs]
    shared_status = sorted(next(i["status"] for i in r if i["source"].endswith("shared.md")) for r in reports)
    assert shared_status == ["added", "unchanged"]  # the second writer waited, then saw the first one's work
    assert sum("another process is writing" in err for _, err in outputs) <= 1
    kb = KnowledgeBase(pg_url, settings=load_settings(None, {"embedder.model": str(tiny_embedder_dir)}))
    sources = kb.sources()
    assert len(sources) == 13 and len(kb) == sum(s.chunks for s in sources)
    ids = [c.id for c in kb.store.chunks()]
    assert len(ids) == len(set(ids)) and kb.store.source_versions() == {(s.source, s.sha256): s.chunks for s in sources}


def test_one_writer_at_a_time_and_the_waiter_is_told(pg_url, capsys):
    import threading

    from ragtune.index.stores import make_store

    first, second = make_store("postgres", pg_url), make_store("postgres", pg_url)
    entered = threading.Event()
    with first.writer() as held:
        assert held
        with second.writer(wait=False) as other:
            assert not other
        waiter = threading.Thread(target=lambda: second.writer().__enter__() and entered.set())
        waiter.start()
        waiter.join(0.5)
        assert not entered.is_set()  # still waiting for the first writer
    waiter.join(10)
    assert entered.is_set()
    assert "another process is writing to this knowledge base; waiting" in capsys.readouterr().err


def test_a_reader_reconnects_after_the_server_dropped_its_connection(pg_url, docs, tiny):
    import psycopg

    kb = KnowledgeBase(pg_url, settings=load_settings(None), embedder=tiny)
    kb.add([docs])
    n = len(kb)
    with psycopg.connect(pg_url, autocommit=True) as admin:  # as a server restart or a failover would
        admin.execute("SELECT pg_terminate_backend(%s)", (kb.store._read.info.backend_pid,))
    assert len(kb) == n and kb.search("battery warranty", k=1)


def test_recorded_bm25_statistics_give_the_live_scores(pg_url, docs, tiny):
    kb = KnowledgeBase(pg_url, settings=load_settings(None), embedder=tiny)
    kb.add([docs])  # ends with optimize(): statistics recorded
    recorded = [(h.id, round(h.score, 6)) for h in kb.store.lexical_search("battery warranty hours", 5)]
    kb.store._write.execute("DELETE FROM ragtune_meta WHERE key = 'bm25'")  # back to live statistics
    assert [(h.id, round(h.score, 6)) for h in kb.store.lexical_search("battery warranty hours", 5)] == recorded
    assert recorded and all(score > 0 for _, score in recorded)
