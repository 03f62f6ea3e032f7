"""Word .docx: paragraphs in order, headings as ``#`` lines, tables as ``cell | cell`` rows (python-docx)."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

from ragtune.errors import InputError

_HEADING_STYLE = re.compile(r"^heading\s*([1-9])$", re.IGNORECASE)


def load_docx(path: Path, data: bytes) -> tuple[str, dict[str, Any]]:
    """(text, metadata) of a Word document; the title is the core property, else the Title-styled paragraph."""
    import docx

    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise InputError(f"{path}: not a .docx (not a zip package); check the file or give it the right suffix")
    try:
        document = docx.Document(io.BytesIO(data))
        blocks, styled_title = _blocks(document)
        title = (document.core_properties.title or "").strip() or styled_title
    except Exception as e:  # python-docx/lxml raise KeyError, ValueError, XMLSyntaxError... on broken packages
        raise InputError(f"{path}: damaged or unsupported Word file ({type(e).__name__}: {e}); "
                         "re-save it as .docx") from None
    text = "\n\n".join(blocks)
    if not text.strip():
        raise InputError(f"{path}: the document has no text; check that it is not empty or images only")
    return text, ({"title": title} if title else {})


def _blocks(document: Any) -> tuple[list[str], str | None]:
    from docx.table import Table

    blocks: list[str] = []
    title = None
    for item in document.iter_inner_content():  # paragraphs and tables in document order
        if isinstance(item, Table):
            rows = _table_rows(item)
            if rows:
                blocks.append("\n".join(rows))  # one block: the chunker keeps a table together when it fits
            continue
        text = item.text.strip()
        if not text:
            continue
        style = (item.style.name if item.style is not None else "") or ""
        heading = _HEADING_STYLE.match(style)
        if style.lower() == "title":
            title = title or text
            blocks.append(f"# {text}")
        elif heading:
            blocks.append("#" * min(6, int(heading.group(1))) + f" {text}")
        else:
            blocks.append(text)
    return blocks, title


def _table_rows(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            value = " ".join(cell.text.split())
            if value and (not cells or cells[-1] != value):  # merged cells repeat their text
                cells.append(value)
        if cells:
            rows.append(" | ".join(cells))
    return rows
