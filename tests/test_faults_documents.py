"""Fault suite, documents and ingestion: each bad file fails alone with a reason naming it, never hangs,
is never read whole when huge, and everything stored before is still there and searchable afterwards."""

from __future__ import annotations

import codecs
import io
import os
import signal
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import pytest

from _faults_util import DOCS, assert_kept, make_kb, open_kb, snapshot

MB = 1024 * 1024


@contextmanager
def no_hang(seconds: int = 60):
    """Fail (instead of hanging CI) when the block takes longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: ragtune hung")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def kb(tmp_path):
    return make_kb(tmp_path)


def ingest_one(kb, path: Path) -> dict:
    """Ingest one path into the kb (without hanging); return its single report entry."""
    with no_hang():
        report = kb.add([path], progress=False)
    assert len(report) == 1, report.to_json()
    return report.to_json()[0]


def image_only_pdf() -> bytes:
    """A one-page PDF whose only content is a picture (a scan without a text layer)."""
    import pypdfium2 as pdfium
    from PIL import Image

    pdf = pdfium.PdfDocument.new()
    page = pdf.new_page(200, 200)
    image = pdfium.PdfImage.new(pdf)
    image.set_bitmap(pdfium.PdfBitmap.from_pil(Image.new("RGB", (40, 40), (200, 30, 30))))
    image.set_matrix(pdfium.PdfMatrix().scale(100, 100))
    page.insert_obj(image)
    page.gen_content()
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def encrypted_pdf() -> bytes:
    import pypdf

    from test_documents_loaders import make_pdf

    writer = pypdf.PdfWriter(clone_from=io.BytesIO(make_pdf([["Secret plans."]])))
    writer.encrypt(user_password="hunter2", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def broken_docx() -> bytes:
    """A real .docx cut in half: the zip's central directory is gone."""
    import docx

    document = docx.Document()
    document.add_paragraph("The Zorblax manual, chapter one. " * 50)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()[: len(out.getvalue()) // 2]


# name, bytes, what the reason must say
BAD_FILES = {
    "empty": ("empty.txt", lambda: b"", "the file is empty"),
    "blank": ("blank.md", lambda: b" \n\t \n", "the file is empty"),
    "binary-txt": ("photo.txt", lambda: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00\x10\x08\x02" * 500,
                   "looks like binary data"),
    "binary-html": ("random.html", lambda: os.urandom(8192), "binary data"),
    "encrypted-pdf": ("locked.pdf", encrypted_pdf, "encrypted with a password"),
    "image-only-pdf": ("scan.pdf", image_only_pdf, "no extractable text"),
    "broken-docx": ("cut.docx", broken_docx, "not a .docx"),
    "invalid-utf16": ("bad16.txt", lambda: codecs.BOM_UTF16_LE + "Zorblax".encode("utf-16-le") + b"\x00\xd8",
                      "not valid utf-16"),
    "invalid-utf8-undefined": ("undefined.txt", lambda: b"caf\xc3 \x81\x8d\x8f\x90\x9d" * 40,
                               "not readable as text"),
    "script-only-html": ("app.html", lambda: b"<html><head><script>document.write('hi')</script></head>"
                         b"<body><script src='app.js'></script><noscript></noscript></body></html>",
                         "no text found"),
    "unsupported-suffix": ("table.xlsx", lambda: b"PK\x03\x04", "unsupported file type"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_fails_alone_with_its_reason(tmp_path, kb, case):
    name, make, reason = BAD_FILES[case]
    before = snapshot(kb.path)
    path = tmp_path / name
    path.write_bytes(make())
    good = tmp_path / "good.txt"
    good.write_text("The Grelt toaster has nine browning levels.\n")
    with no_hang():
        report = kb.add([path, good], progress=False)
    bad, ok = report.to_json()
    assert bad["status"] == "failed" and str(path) in bad["reason"] and reason in bad["reason"], bad
    assert ok["status"] == "added", ok  # the rest of the batch goes on
    after = assert_kept(kb.path, before)
    assert after.count == before.count + 1 and str(good) in after.sources


def test_huge_sparse_file_is_refused_without_being_read(tmp_path, kb):
    before = snapshot(kb.path)
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as f:
        f.truncate(200 * MB)  # sparse: 200 MB long, nothing on disk
    tracemalloc.start()
    try:
        entry = ingest_one(kb, huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert entry["status"] == "failed" and "larger than 100 MB" in entry["reason"] and "split it" in entry["reason"]
    assert peak < 20 * MB, f"{peak / MB:.0f} MB allocated: the file was read"
    assert_kept(kb.path, before)


def test_fifo_is_refused_without_opening_it(tmp_path, kb):
    before = snapshot(kb.path)
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: forever
    entry = ingest_one(kb, fifo)
    assert entry["status"] == "failed" and "named pipe (FIFO), not a regular file" in entry["reason"]
    # and inside a folder the FIFO fails alone while its neighbours are added
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "folder" / "pipe.md")
    (tmp_path / "folder" / "note.txt").write_text("Hollin pumps need priming.\n")
    with no_hang():
        statuses = {i.source.rsplit("/", 1)[1]: i.status for i in kb.add([tmp_path / "folder"], progress=False)}
    assert statuses == {"pipe.md": "failed", "note.txt": "added"}
    assert_kept(kb.path, before)


def test_txt_symlinked_to_dev_zero_is_refused(tmp_path, kb):
    before = snapshot(kb.path)
    link = tmp_path / "zero.txt"
    link.symlink_to("/dev/zero")  # reading it never ends (it grew to 14 GB in 30 s before)
    entry = ingest_one(kb, link)
    assert entry["status"] == "failed" and "character device" in entry["reason"]
    assert_kept(kb.path, before)


def test_symlink_loop_fails_with_its_reason(tmp_path, kb):
    before = snapshot(kb.path)
    (tmp_path / "a.txt").symlink_to(tmp_path / "b.txt")
    (tmp_path / "b.txt").symlink_to(tmp_path / "a.txt")
    (tmp_path / "loopdir").mkdir()
    (tmp_path / "loopdir" / "self").symlink_to(tmp_path / "loopdir")  # a folder loop: walked once, not forever
    (tmp_path / "loopdir" / "real.txt").write_text("The Grelt toaster has a bagel mode.\n")
    entry = ingest_one(kb, tmp_path / "a.txt")
    assert entry["status"] == "failed" and "Too many levels of symbolic links" in entry["reason"]
    with no_hang():
        report = kb.add([tmp_path / "loopdir"], progress=False)
    assert [(i.source.rsplit("/", 1)[1], i.status) for i in report] == [("real.txt", "added")]
    assert_kept(kb.path, before)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux /proc")
def test_unreadable_file_fails_with_the_system_reason(tmp_path, kb):
    # As root, chmod 000 stops nothing; /proc/self/mem is a regular file whose read at offset 0 fails
    # with EIO for every user, a real unreadable file.
    before = snapshot(kb.path)
    link = tmp_path / "secret.txt"
    link.symlink_to("/proc/self/mem")
    entry = ingest_one(kb, link)
    assert entry["status"] == "failed" and "cannot be read (Input/output error)" in entry["reason"]
    assert_kept(kb.path, before)


def test_missing_file_fails_alone(tmp_path, kb):
    before = snapshot(kb.path)
    entry = ingest_one(kb, tmp_path / "nowhere.md")
    assert entry["status"] == "failed" and "no such file or folder" in entry["reason"]
    assert_kept(kb.path, before)


def test_legacy_windows_text_is_read_not_mangled(tmp_path, kb):
    before = snapshot(kb.path)
    path = tmp_path / "legacy.txt"
    path.write_bytes("The café serves crème brûlée — the Zorblax’s favourite.\n".encode("cp1252"))
    assert ingest_one(kb, path)["status"] == "added"
    hit = kb.search("café crème brûlée", k=1)[0]
    assert hit.source == str(path) and "crème brûlée — the Zorblax’s" in hit.text
    assert_kept(kb.path, before)


def test_html_nested_ten_thousand_levels_keeps_its_text(tmp_path, kb):
    before = snapshot(kb.path)
    path = tmp_path / "deep.html"
    path.write_text("<html><head><title>Deep</title></head><body>" + "<div>" * 10_000
                    + "The Quillon kettle descales itself every ninety days." + "</div>" * 10_000 + "</body></html>")
    entry = ingest_one(kb, path)
    assert entry["status"] == "added", entry  # lxml stops at 256 levels; the text must not be lost
    assert kb.search("quillon kettle descales", k=1)[0].source == str(path)
    assert_kept(kb.path, before)


@pytest.mark.parametrize("name", ["my notes.txt", "résumé 東京 – ünïcode.md", "two\nlines.txt", " lead and trail .txt"])
def test_odd_path_names_are_kept_exactly(tmp_path, kb, name):
    before = snapshot(kb.path)
    path = tmp_path / "odd dir" / name
    path.parent.mkdir()
    path.write_text("The Vantor lamp dims itself at sunset.\n")
    entry = ingest_one(kb, path)
    assert entry["status"] == "added" and entry["source"] == str(path)
    assert kb.search("vantor lamp dims", k=1)[0].source == str(path)
    assert open_kb(kb.path).remove(str(path)) == 1  # the exact name works for removal too
    assert_kept(kb.path, before)


def test_folder_of_two_thousand_tiny_files(tmp_path, kb):
    before = snapshot(kb.path)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(2000):
        (folder / f"note{i:04d}.txt").write_text(f"Note {i}: shelf {i % 37} holds box {i}.\n")
    with no_hang(300):
        report = kb.add([folder], progress=False)
    assert len(report.added) == 2000 and not report.failed
    after = assert_kept(kb.path, before)
    assert after.count == before.count + 2000
    with no_hang(300):
        again = kb.add([folder], progress=False)
    assert len(again.unchanged) == 2000 and again.embedded == 0  # nothing re-read or re-embedded
    assert snapshot(kb.path).count == after.count


def test_file_vanishing_mid_ingestion(tmp_path, kb, monkeypatch):
    import ragtune.documents as documents

    before = snapshot(kb.path)
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (folder / name).write_text(f"File {name} is about the Torvin valve.\n")
    real_load = documents.load

    def load_then_delete(path, source=None):
        doc = real_load(path, source)
        if Path(path).name == "a.txt":
            (folder / "b.txt").unlink()  # gone between the folder walk and its turn
        return doc

    monkeypatch.setattr(documents, "load", load_then_delete)
    statuses = {i.source.rsplit("/", 1)[1]: (i.status, i.reason) for i in kb.add([folder], progress=False)}
    assert statuses["a.txt"][0] == statuses["c.txt"][0] == "added"
    assert statuses["b.txt"][0] == "failed" and "no such file" in statuses["b.txt"][1]
    assert_kept(kb.path, before)


def test_file_changing_mid_ingestion_is_stored_as_read(tmp_path, kb, monkeypatch):
    import ragtune.documents as documents

    before = snapshot(kb.path)
    path = tmp_path / "live.txt"
    path.write_text("Version one: the Torvin valve opens clockwise.\n")
    real_load = documents.load

    def load_then_change(p, source=None):
        doc = real_load(p, source)
        Path(p).write_text("Version two: the Torvin valve opens anticlockwise now.\n")  # written while we work
        return doc

    monkeypatch.setattr(documents, "load", load_then_change)
    assert ingest_one(kb, path)["status"] == "added"
    monkeypatch.setattr(documents, "load", real_load)
    # what is stored is one consistent version (text and hash agree), and the change is seen next time
    hit = kb.search("torvin valve", k=1)[0]
    assert hit.text.startswith("Version one")
    assert ingest_one(kb, path)["status"] == "updated"
    assert kb.search("torvin valve", k=1)[0].text.startswith("Version two")
    assert_kept(kb.path, before)


def test_knowledge_base_ingested_into_itself(tmp_path, kb):
    before = snapshot(kb.path)
    (kb.path / "uploads").mkdir()
    (kb.path / "uploads" / "inside.txt").write_text("A file inside the knowledge base folder.\n")
    entry = ingest_one(kb, kb.path)
    assert entry["status"] == "failed" and "inside the knowledge base" in entry["reason"]
    # walking the parent folder (kb/ and docs/ both in it) skips the kb's own files
    with no_hang():
        report = kb.add([tmp_path], progress=False)
    assert [(i.source, i.status) for i in report] == [(s, "unchanged") for s in sorted(before.sources)]
    after = assert_kept(kb.path, before)
    assert not any("inside.txt" in s for s in after.sources)


def test_cli_ingest_of_a_bad_file_exits_1_with_one_line_naming_it(tmp_path, kb, monkeypatch):
    from typer.testing import CliRunner

    from _faults_util import HashEmbedder
    from ragtune.cli.main import _register, app

    monkeypatch.setattr("ragtune.index.knowledge_base.make_embedder", lambda settings: HashEmbedder())
    (kb.path / "ragtune.toml").write_text("[chunking]\nchunk_tokens = 64\noverlap_tokens = 8\n")
    before = snapshot(kb.path)
    bad = tmp_path / "random.html"
    bad.write_bytes(os.urandom(4096))
    _register()
    result = CliRunner().invoke(app, ["ingest", str(bad), str(tmp_path / "docs"), "--kb", str(kb.path)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {bad}: looks like binary data, not HTML text; check the file or give it the "
                      "right suffix"]
    assert "Traceback" not in result.output + result.stderr
    assert_kept(kb.path, before)


def test_docs_fixture_has_the_expected_sources(kb):
    # the "before" side of every check: three sources, one chunk each, the Zephyr note found first
    snap = snapshot(kb.path)
    assert snap.count == len(DOCS) and snap.top[0].endswith("zephyr.md")
