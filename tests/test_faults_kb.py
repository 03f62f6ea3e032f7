"""Fault suite, knowledge-base storage: deleted or damaged store and manifest, read-only folder, full disk,
a second writer; each ends in one clear line (or a repair) and nothing stored before is lost."""

from __future__ import annotations

import errno
import os
import shutil
import threading

import pytest

from _faults_util import QUERY, assert_kept, make_kb, one_line, open_kb, run_in_mount_namespace, snapshot
from ragtune.errors import ConfigError, InputError, StorageError


@pytest.fixture
def kb(tmp_path):
    return make_kb(tmp_path)


def test_deleted_store_folder_is_an_error_not_no_matches_and_reingest_repairs(tmp_path, kb):
    before = snapshot(kb.path)
    shutil.rmtree(kb.path / "lance")
    with pytest.raises(ConfigError) as info:
        open_kb(kb.path).search(QUERY)
    message = one_line(str(info.value))
    assert str(kb.path) in message and "holds no chunks" in message and "re-run `ragtune ingest`" in message
    # following the advice: the same files are added again, not called unchanged
    report = open_kb(kb.path).add([tmp_path / "docs"], progress=False)
    assert len(report.added) == len(before.sources) and not report.unchanged
    assert_kept(kb.path, before)


def test_deleted_manifest_is_rebuilt_from_the_store(tmp_path, kb):
    before = snapshot(kb.path)
    (kb.path / "manifest.json").unlink()
    after = assert_kept(kb.path, before)  # opening rebuilds it: same sources, hashes and chunk counts
    assert (kb.path / "manifest.json").is_file() and after.sources == before.sources
    report = open_kb(kb.path).add([tmp_path / "docs"], progress=False)
    assert len(report.unchanged) == len(before.sources) and report.embedded == 0


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"sources": "zephyr.md"}', b"\x00\xff" * 10])
def test_corrupted_manifest_is_one_line_then_repaired_as_it_says(kb, content):
    before = snapshot(kb.path)
    (kb.path / "manifest.json").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        open_kb(kb.path)
    message = one_line(str(info.value))
    assert "manifest.json: unreadable knowledge-base manifest" in message and "move it aside" in message
    assert (kb.path / "manifest.json").read_bytes() == content  # the error itself changes nothing
    (kb.path / "manifest.json").rename(kb.path / "manifest.json.bad")  # what the message says to do
    assert_kept(kb.path, before)


def test_damaged_store_file_is_one_line_then_rebuilt_as_it_says(tmp_path, kb):
    before = snapshot(kb.path)
    for data_file in (kb.path / "lance" / "chunks.lance" / "data").iterdir():
        with open(data_file, "r+b") as f:
            f.truncate(16)  # a disk error or a partial copy
    with pytest.raises(StorageError) as info:
        open_kb(kb.path).search(QUERY)
    message = one_line(str(info.value))
    assert "the store could not be read" in message and "move its folder" in message
    shutil.move(kb.path / "lance", tmp_path / "lance.damaged")  # what the message says to do
    report = open_kb(kb.path).add([tmp_path / "docs"], progress=False)
    assert len(report.added) == len(before.sources)
    assert_kept(kb.path, before)


def test_interrupted_write_is_reconciled_on_open(tmp_path, kb):
    before = snapshot(kb.path)
    extra = tmp_path / "extra.txt"
    extra.write_text("The Grelt toaster has a crumb drawer.\n")
    real_save = kb.manifest.save
    calls = []

    def crash_on_manifest_save():
        calls.append(1)
        raise KeyboardInterrupt  # the process dies after the store commit, before the manifest

    kb.manifest.save = crash_on_manifest_save
    with pytest.raises(KeyboardInterrupt):
        kb.add([extra], progress=False)
    kb.manifest.save = real_save
    assert calls and (kb.path / "ingest.journal").exists()
    after = assert_kept(kb.path, before)  # reopening drops the rows the manifest does not describe
    assert after.count == before.count and not (kb.path / "ingest.journal").exists()


def test_injected_full_disk_during_a_write_keeps_everything(tmp_path, kb, monkeypatch):
    before = snapshot(kb.path)
    extra = tmp_path / "extra.txt"
    extra.write_text("The Grelt toaster has a crumb drawer.\n")
    victim = open_kb(kb.path)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(victim.store, "upsert", no_space)
    with pytest.raises(StorageError) as info:
        victim.add([extra], progress=False)
    message = one_line(str(info.value))
    assert "No space left on device" in message and "free some space" in message and "is kept" in message
    assert_kept(kb.path, before)
    report = open_kb(kb.path).add([extra], progress=False)  # space is back: the same run now succeeds
    assert [i.status for i in report] == ["added"]
    assert snapshot(kb.path).count == before.count + 1


def test_full_disk_on_a_real_small_tmpfs(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("".join(f"Paragraph {i}: turbine {i} has blade pitch {i * 7} degrees.\n\n" for i in range(30000)))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = run_in_mount_namespace(f"mount -t tmpfs -o size=1m tmpfs {mnt}", f"""
from pathlib import Path
from _faults_util import make_kb, open_kb, snapshot, assert_kept
from ragtune.errors import StorageError
root = Path({str(mnt)!r})
make_kb(root)
before = snapshot(root / "kb")
try:
    open_kb(root / "kb").add([{str(big)!r}], progress=False)
except StorageError as e:
    print("ERROR:", e)
assert_kept(root / "kb", before)
print("KEPT", before.count)
""")
    assert result.returncode == 0, result.stderr[-3000:]
    error = next(line for line in result.stdout.splitlines() if line.startswith("ERROR:"))
    assert "No space left on device" in error and "free some space" in error
    assert "KEPT 3" in result.stdout


def test_read_only_knowledge_base_searches_and_refuses_writes(tmp_path, kb):
    before = snapshot(kb.path)
    new = tmp_path / "new.txt"
    new.write_text("A new note about solar panels.\n")
    result = run_in_mount_namespace(f"mount --bind {kb.path} {kb.path}; mount -o remount,bind,ro {kb.path}", f"""
from pathlib import Path
from _faults_util import open_kb, QUERY
from ragtune.errors import StorageError
kb = open_kb(Path({str(kb.path)!r}))
print("TOP", kb.search(QUERY, k=1)[0].source)
for write in (lambda: kb.add([{str(new)!r}], progress=False), lambda: kb.remove({sorted(before.sources)[0]!r})):
    try:
        write()
    except StorageError as e:
        print("ERROR:", e)
""")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"TOP {before.top[0]}" in result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 2 and all("read-only file system" in e for e in errors)
    assert_kept(kb.path, before)


def test_second_writer_says_whom_it_waits_for_then_gives_up(kb, capsys, monkeypatch):
    from ragtune.index import writes

    before = snapshot(kb.path)
    monkeypatch.setattr(writes, "WAIT_S", 0.6)
    with writes.writer_lock(kb.path):  # another ingestion holds the lock
        with pytest.raises(StorageError) as info:
            open_kb(kb.path).add([kb.path.parent / "docs"], progress=False)
    waiting = capsys.readouterr().err
    assert f"waiting for the lock on {kb.path}, held by process {os.getpid()}" in waiting
    message = one_line(str(info.value))
    assert f"still locked by process {os.getpid()}" in message and "re-run" in message
    assert_kept(kb.path, before)


def test_second_writer_goes_on_once_the_first_finishes(tmp_path, kb, capsys):
    from ragtune.index import writes

    before = snapshot(kb.path)
    extra = tmp_path / "extra.txt"
    extra.write_text("The Grelt toaster has a crumb drawer.\n")
    held, release = threading.Event(), threading.Event()

    def first_writer():
        with writes.writer_lock(kb.path):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=first_writer)
    thread.start()
    held.wait(10)
    threading.Timer(0.5, release.set).start()
    report = open_kb(kb.path).add([extra], progress=False)
    thread.join(10)
    assert "waiting for the lock" in capsys.readouterr().err
    assert [i.status for i in report] == ["added"]
    assert snapshot(kb.path).count == before.count + 1


def test_kb_path_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / "kb.txt"
    path.write_text("not a folder")
    with pytest.raises(InputError) as info:
        open_kb(path)
    assert "is a file, not a knowledge-base folder" in one_line(str(info.value))
    assert path.read_text() == "not a folder"


def test_removing_an_unknown_source_changes_nothing(kb):
    before = snapshot(kb.path)
    with pytest.raises(InputError) as info:
        open_kb(kb.path).remove("no-such-file.md")
    assert "not in the knowledge base" in one_line(str(info.value))
    assert_kept(kb.path, before)


def test_cli_search_of_a_kb_with_a_deleted_store_exits_1_with_the_repair(kb, monkeypatch):
    from typer.testing import CliRunner

    from _faults_util import HashEmbedder
    from ragtune.cli.main import _register, app

    monkeypatch.setattr("ragtune.index.knowledge_base.make_embedder", lambda settings: HashEmbedder())
    shutil.rmtree(kb.path / "lance")
    _register()
    result = CliRunner().invoke(app, ["search", "zephyr warranty", "--kb", str(kb.path)])
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)
    assert "no matches" not in result.output and "holds no chunks" in str(result.exception)
    listed = CliRunner().invoke(app, ["sources", "--kb", str(kb.path)])  # the names to re-ingest, and a warning
    assert listed.exit_code == 0 and "zephyr.md" in listed.stdout
    assert "warning:" in listed.stderr and "re-run `ragtune ingest`" in listed.stderr
