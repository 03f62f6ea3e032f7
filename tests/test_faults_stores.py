"""Fault suite, stores and clusters: a libpq key/value --kb string (password never echoed), PostgreSQL stopped
during an ingestion, `kb migrate` into a non-empty target, `ingest --ray` to a malformed or dead address, and
`data check`'s verdict; each ends in one line on stderr and nothing stored before is lost."""

from __future__ import annotations

import json
import socket
import sys

import pytest
from typer.testing import CliRunner

from _faults_util import DOCS, HashEmbedder, make_kb, one_line, open_kb, run_main, settings
from ragtune.cli.main import _register, app, main
from ragtune.errors import ConfigError, StorageError
from ragtune.index.knowledge_base import KnowledgeBase
from ragtune.index.stores import redact

SECRET = "s3cr3t-Pw"


@pytest.mark.parametrize("conninfo", [f"host=db.example dbname=kb user=ann password={SECRET}",
                                      f"host=db.example password='{SECRET} x\\'y' dbname=kb",
                                      f"dbname=kb password = {SECRET}"])
@pytest.mark.parametrize("command", [["search", "zephyr"], ["ask", "zephyr?"], ["ingest", "."], ["sources"]])
def test_a_libpq_key_value_kb_is_refused_without_echoing_its_password(tmp_path, monkeypatch, capsys, conninfo, command):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, *command, "--kb", conninfo)
    assert code == 1 and SECRET not in out + err and "password" in err
    assert one_line(err.strip()).startswith("error: ")
    assert list(tmp_path.iterdir()) == []  # no folder named after the connection string
    assert SECRET not in redact(f"could not connect: {conninfo}: refused")


def test_a_libpq_string_to_the_library_names_the_url_form(tmp_path):
    with pytest.raises(ConfigError) as info:
        KnowledgeBase(f"host=/tmp dbname=kb password={SECRET}", settings())
    message = one_line(str(info.value))
    assert SECRET not in message and "postgresql://user@host/db" in message


def test_postgresql_stopped_during_an_ingestion_is_one_line_and_keeps_what_was_stored(tmp_path):
    from ragtune.index.stores.local_pg import LocalServer

    server = LocalServer()
    try:
        url = server.new_database()
        folder = tmp_path / "docs"
        folder.mkdir()
        for name, text in DOCS.items():
            (folder / name).write_text(text, encoding="utf-8")
        KnowledgeBase(url, settings(), embedder=HashEmbedder()).add([folder / "cats.txt"], progress=False)

        class StopsTheServer(HashEmbedder):
            def __call__(self, texts):  # the server goes away between reading the files and writing them
                server.server.cleanup()
                return super().__call__(texts)

        kb = KnowledgeBase(url, settings(), embedder=StopsTheServer())
        with pytest.raises((StorageError, ConfigError)) as info:
            kb.add([folder], progress=False)
        message = one_line(str(info.value))
        assert "PostgreSQL" in message and "check that the server" in message
    finally:
        server.stop()


def test_kb_migrate_into_a_non_empty_target_reports_the_copy_and_warns_of_the_merge(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ragtune.index.knowledge_base.make_embedder", lambda settings: HashEmbedder())
    source = make_kb(tmp_path / "a")  # 3 sources
    other = tmp_path / "other.txt"
    other.write_text("Lighthouses use Fresnel lenses to focus their beam.\n")
    target = open_kb(tmp_path / "b")  # holds one source of its own and one of the same name as the source's
    target.add([other, tmp_path / "a" / "docs" / "cats.txt"], progress=False)
    copied, before = len(source), len(target)
    same = next(s.chunks for s in source.sources() if s.source.endswith("cats.txt"))
    code = 0
    monkeypatch.setattr(sys, "argv", ["ragtune", "kb", "migrate", str(source.path), str(target.path), "--json"])
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    after = len(KnowledgeBase(target.path, settings(), embedder=HashEmbedder()))
    assert report["chunks"] == copied and report["sources"] == 3 and after == report["target_chunks"] > copied
    assert (report["kept"], report["replaced"]) == (1, 1) and after == before + copied - same
    assert one_line(captured.err.strip()).startswith(f"warning: {target.path} already held 2 sources: merged")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["not-an-address", "127.0.0.1:notaport", "host:99999", "dead", "ray://dead"])
def test_ingest_ray_to_a_malformed_or_dead_address_is_one_line_in_seconds(tmp_path, monkeypatch, capsys, address):
    pytest.importorskip("ray")
    import time

    monkeypatch.setattr("ragtune.index.knowledge_base.make_embedder", lambda settings: HashEmbedder())
    (tmp_path / "a.txt").write_text("The Zephyr warranty lasts twelve years.\n")
    address = address.replace("dead", f"127.0.0.1:{_dead_port()}")
    started = time.monotonic()
    code, _, err = run_main(monkeypatch, capsys, "ingest", str(tmp_path / "a.txt"), "--kb", str(tmp_path / "kb"),
                            "--ray", address)
    assert code == 1 and time.monotonic() - started < 30  # Ray alone retries a dead head for minutes
    line = one_line(err.strip())
    assert line.startswith(f"error: --ray {address}: ") and ("not a cluster address" in line or "nothing answers" in line)


def test_data_check_prints_its_report_on_stdout_and_its_error_on_stderr(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q?", "answer": "a"}\n{not json\n')
    code, out, err = run_main(monkeypatch, capsys, "data", "check", str(bad), "--no-tokens", "--json")
    assert code == 1 and json.loads(out)["ok"] is False  # stdout: the report only
    line = one_line(err.strip())
    assert line.startswith(f"error: {bad}: 1 error(s)") and "re-run `ragtune data check`" in line
    _register()
    plain = CliRunner().invoke(app, ["data", "check", str(bad), "--no-tokens"])
    assert plain.exit_code == 1 and "schema: json: not valid JSON" in plain.stdout  # the report, as before
