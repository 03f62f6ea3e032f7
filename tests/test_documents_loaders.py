"""Loaders: each format read from small files written here, and every kind of bad input reported by name."""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import zlib
from pathlib import Path

import pytest

from ragtune.documents import SUPPORTED_SUFFIXES, Chunker, iter_files, load
from ragtune.errors import InputError


def make_pdf(pages: list[list[str]], compress: bool = False) -> bytes:
    """A minimal valid PDF: one Helvetica text object per page, one line per string, correct xref table."""
    objects: list[bytes] = []
    n_pages = len(pages)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, lines in enumerate(pages):
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops += [f"({escaped}) Tj", "T*"]
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        extra = b""
        if compress:
            stream, extra = zlib.compress(stream), b" /Filter /FlateDecode"
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {5 + 2 * i} 0 R >>".encode())
        objects.append(b"<< /Length %d%s >>\nstream\n" % (len(stream), extra) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


# -- text and markdown ------------------------------------------------------------------------------

def test_txt_utf16_with_bom_is_decoded(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + "Grüße aus Zürich.\r\nZweite Zeile.".encode("utf-16-le"))
    doc = load(path, "notes.txt")
    assert doc.text == "Grüße aus Zürich.\nZweite Zeile."
    assert doc.source == "notes.txt"
    assert doc.metadata["format"] == "text"


def test_txt_utf8_sig_and_cp1252(tmp_path):
    (tmp_path / "a.txt").write_bytes(codecs.BOM_UTF8 + "café au lait".encode())
    (tmp_path / "b.txt").write_bytes("naïve “quotes” – dash".encode("cp1252"))
    assert load(tmp_path / "a.txt").text == "café au lait"
    assert load(tmp_path / "b.txt").text == "naïve “quotes” – dash"


def test_markdown_keeps_headings_and_finds_title(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text("Intro line.\n\n# Widget Guide\n\n## Setup\n\nPlug it in.\n", encoding="utf-8")
    doc = load(path)
    assert "## Setup" in doc.text and "Plug it in." in doc.text
    assert doc.metadata["title"] == "Widget Guide"
    assert doc.metadata["format"] == "markdown"


def test_metadata_has_path_hash_and_mtime(tmp_path):
    path = tmp_path / "facts.txt"
    path.write_text("The pump runs at 40 litres per minute.", encoding="utf-8")
    os.utime(path, (1_700_000_000, 1_700_000_000))
    meta = load(path).metadata
    assert meta["path"] == str(path.resolve())
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["mtime"] == 1_700_000_000
    assert meta["size"] == path.stat().st_size


# -- html -------------------------------------------------------------------------------------------

ARTICLE = " ".join(
    f"The Zephyr valve number {i} regulates the flow of coolant through the secondary loop of the plant."
    for i in range(6)
)
PAGE = f"""<!doctype html><html><head><title>Zephyr Valve Handbook</title>
<script>var trackingPixel = "SCRIPT_SHOULD_NOT_APPEAR"; window.ads = [];</script>
<style>.menu {{ color: red }}</style></head>
<body>
<header><nav><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop our catalogue</a></li>
<li><a href="/login">Sign in to your account</a></li></ul></nav></header>
<div class="ad">Buy cheap watches now, limited offer</div>
<main><article>
<h1>Zephyr Valve Handbook</h1>
<p>{ARTICLE}</p>
<h2>Maintenance</h2>
<p>Inspect the gasket of every Zephyr valve each spring and replace it when it shows cracks or hardening.
A worn gasket is the most common cause of slow coolant leaks in the secondary loop.</p>
</article></main>
<footer><p>Copyright 2024 Zephyr Corp. All rights reserved. Cookie settings. Privacy policy.</p></footer>
</body></html>"""


def test_html_keeps_article_drops_boilerplate(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(PAGE, encoding="utf-8")
    doc = load(path)
    assert "regulates the flow of coolant through the secondary loop" in doc.text
    assert "Inspect the gasket of every Zephyr valve each spring" in doc.text
    assert "## Maintenance" in doc.text  # headings kept as lines the chunker can see
    for boilerplate in ("SCRIPT_SHOULD_NOT_APPEAR", "Shop our catalogue", "Sign in to your account",
                        "All rights reserved", "color: red"):
        assert boilerplate not in doc.text
    assert doc.metadata["title"] == "Zephyr Valve Handbook"
    assert doc.metadata["format"] == "html"


def test_html_short_page_still_yields_its_text(tmp_path):
    path = tmp_path / "note.htm"
    path.write_text("<html><body><p>Door code is 4711.</p></body></html>", encoding="utf-8")
    assert "Door code is 4711." in load(path).text


def test_html_repairs_mojibake(tmp_path):
    # UTF-8 text that was once decoded as cp1252 and saved again as UTF-8, as found on real pages
    broken = "We’re answering – it’s done.".encode().decode("cp1252")
    path = tmp_path / "moji.html"
    path.write_text(f"<html><body><article><p>{broken} {ARTICLE}</p></article></body></html>", encoding="utf-8")
    assert "We’re answering – it’s done." in load(path).text


def test_html_without_text_is_an_input_error(tmp_path):
    path = tmp_path / "scripts.html"
    path.write_text("<html><head><script>var a = 1;</script></head><body><script>render('#app')</script>"
                    "<style>p { margin: 0 }</style><div id='app'></div></body></html>", encoding="utf-8")
    with pytest.raises(InputError, match="scripts.html"):
        load(path)


# -- pdf --------------------------------------------------------------------------------------------

def test_pdf_pages_and_offsets(tmp_path):
    path = tmp_path / "manual.pdf"
    path.write_bytes(make_pdf([["Chapter one talks about pumps.", "Pumps move water."],
                               ["Chapter two talks about valves (and seals)."]], compress=True))
    doc = load(path, "manual.pdf")
    assert doc.metadata["format"] == "pdf"
    assert doc.metadata["page_count"] == 2
    starts = doc.metadata["page_starts"]
    assert starts[0] == 0
    assert doc.text[starts[1]:].startswith("Chapter two talks about valves (and seals).")
    assert "Pumps move water." in doc.text[:starts[1]]
    chunks = Chunker(chunk_tokens=8, overlap_tokens=0, count_tokens=lambda t: len(t.split()))(doc)
    assert [(c.text, c.metadata["page"]) for c in chunks] == [
        ("Chapter one talks about pumps.\nPumps move water.", 1),
        ("Chapter two talks about valves (and seals).", 2),
    ]


def test_pdf_without_text_is_an_input_error(tmp_path):
    path = tmp_path / "scan.pdf"
    path.write_bytes(make_pdf([[]]))
    with pytest.raises(InputError, match=r"scan\.pdf: .*no extractable text"):
        load(path)


def test_encrypted_pdf_is_an_input_error(tmp_path):
    pypdf = pytest.importorskip("pypdf")
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(make_pdf([["Secret plans."]])))
    writer.encrypt(user_password="hunter2", owner_password="owner")
    path = tmp_path / "locked.pdf"
    with path.open("wb") as f:
        writer.write(f)
    with pytest.raises(InputError, match=r"locked\.pdf: .*password"):
        load(path)


# -- docx -------------------------------------------------------------------------------------------

def test_docx_headings_paragraphs_and_tables(tmp_path):
    docx = pytest.importorskip("docx")
    document = docx.Document()
    document.add_heading("Pump Manual", level=0)
    document.add_heading("Installation", level=1)
    document.add_paragraph("Mount the pump on a level surface.")
    table = document.add_table(rows=2, cols=2)
    for r, (a, b) in enumerate([("Model", "Flow"), ("P-100", "40 l/min")]):
        table.cell(r, 0).text, table.cell(r, 1).text = a, b
    document.add_heading("Safety", level=2)
    document.add_paragraph("Never run it dry.")
    path = tmp_path / "manual.docx"
    document.save(path)

    doc = load(path)
    assert doc.metadata["title"] == "Pump Manual"
    assert doc.metadata["format"] == "docx"
    assert "# Installation" in doc.text and "## Safety" in doc.text
    assert "Model | Flow\nP-100 | 40 l/min" in doc.text
    assert doc.text.index("Mount the pump") < doc.text.index("P-100") < doc.text.index("Never run it dry.")


# -- bad inputs -------------------------------------------------------------------------------------

def _zip_without_word_content() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("readme.txt", "not a word document")
    return buffer.getvalue()


@pytest.mark.parametrize("name, data, reason", [
    ("empty.txt", b"", "empty"),
    ("empty.pdf", b"", "empty"),
    ("blank.md", b" \n\t\n", "empty"),
    ("garbage.pdf", bytes(range(256)) * 4, "not a PDF"),
    ("fake.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 4, "damaged or unreadable PDF"),
    ("garbage.docx", bytes(range(256)) * 4, "not a .docx"),
    ("broken.docx", b"PK\x03\x04" + bytes(200), "not a .docx"),
    ("other.docx", _zip_without_word_content(), "damaged or unsupported Word file"),
    ("binary.txt", b"\x00\x01\x02\x81\x8d\x8f\x90\x9d\xff" * 50, "not readable as text"),
    ("nul.md", b"header\x00\x00\x00\x00 body", "binary data"),
    ("bad-bom.txt", codecs.BOM_UTF16_LE + b"\x00\xd8", "byte-order mark"),
])
def test_bad_files_raise_input_error_naming_the_file(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(InputError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message
    assert "\n" not in message


def test_unsupported_extension_lists_supported(tmp_path):
    path = tmp_path / "table.xlsx"
    path.write_bytes(b"PK\x03\x04whatever")
    with pytest.raises(InputError, match=r"table\.xlsx: unsupported file type '\.xlsx'; supported: .*\.pdf"):
        load(path)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(InputError, match=r"nowhere\.md: no such file"):
        load(tmp_path / "nowhere.md")
    with pytest.raises(InputError, match=r"gone\.xyz: no such file"):
        load(tmp_path / "gone.xyz")
    (tmp_path / "dir.md").mkdir()
    with pytest.raises(InputError, match=r"dir\.md: is a folder"):
        load(tmp_path / "dir.md")


# -- iter_files -------------------------------------------------------------------------------------

def test_iter_files_expands_folders_and_names_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for rel in ["docs/b.md", "docs/a.txt", "docs/sub/c.html", "docs/.hidden.md", "docs/.git/x.md",
                "docs/image.png", "paper.pdf", "notes.xyz"]:
        Path(rel).parent.mkdir(parents=True, exist_ok=True)
        Path(rel).write_text("x", encoding="utf-8")
    found = list(iter_files(["docs/", "paper.pdf", "notes.xyz", "missing.md", "./docs/a.txt"]))
    assert [s for _, s in found] == ["docs/a.txt", "docs/b.md", "docs/sub/c.html", "paper.pdf", "notes.xyz",
                                     "missing.md"]
    assert found[2][0] == Path("docs/sub/c.html")
    assert [s for _, s in iter_files(["."])] == ["docs/a.txt", "docs/b.md", "docs/sub/c.html", "paper.pdf"]
    assert [s for _, s in iter_files("docs/sub")] == ["docs/sub/c.html"]  # a single path is fine too
    absolute = [s for _, s in iter_files([tmp_path / "docs" / "sub"])]
    assert absolute == [(tmp_path / "docs" / "sub" / "c.html").as_posix()]


def test_supported_suffixes():
    assert {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"} <= SUPPORTED_SUFFIXES
    assert all(s.startswith(".") and s == s.lower() for s in SUPPORTED_SUFFIXES)
