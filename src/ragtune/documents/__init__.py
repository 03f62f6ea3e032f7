"""Documents: find files, load each format into a Document, and chunk it.

    from ragtune.documents import iter_files, load, Chunker
    chunker = Chunker(chunk_tokens=256, overlap_tokens=32)
    for path, source in iter_files(["docs/", "paper.pdf"]):
        chunks = chunker(load(path, source))   # raises InputError for a file that cannot be read

Loaders are one small module per format, picked by suffix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragtune.documents.chunking import Chunker
from ragtune.documents.files import FORMATS, file_facts, iter_files, read_bytes, source_name
from ragtune.errors import InputError
from ragtune.types import Document

SUPPORTED_SUFFIXES: frozenset[str] = frozenset(FORMATS)

Loader = Callable[[Path, bytes], "tuple[str, dict[str, Any]]"]


def _loader(fmt: str) -> Loader:
    """The loader of a format; imported on demand so a txt-only ingestion never imports PDFium."""
    if fmt == "text":
        from ragtune.documents.text import load_text as loader
    elif fmt == "markdown":
        from ragtune.documents.text import load_markdown as loader
    elif fmt == "html":
        from ragtune.documents.html import load_html as loader
    elif fmt == "pdf":
        from ragtune.documents.pdf import load_pdf as loader
    else:
        from ragtune.documents.docx import load_docx as loader
    return loader


def load(path: str | Path, source: str | None = None) -> Document:
    """Load one file into a Document, or raise InputError("<path>: <reason>; <what to do>")."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None and not path.is_dir():
        if not path.exists():
            raise InputError(f"{path}: no such file or folder; check the path")
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise InputError(f"{path}: unsupported file type '{path.suffix or '(none)'}'; supported: {supported}")
    data = read_bytes(path)
    if not data.strip():
        raise InputError(f"{path}: the file is empty; add content or leave it out")
    text, meta = _loader(fmt)(path, data)  # type: ignore[arg-type]
    if not text.strip():
        raise InputError(f"{path}: no text could be extracted; check the file's content")
    metadata = {"format": fmt, **meta, **file_facts(path, data)}
    return Document(source=source if source is not None else source_name(path), text=text, metadata=metadata)


__all__ = ["SUPPORTED_SUFFIXES", "Chunker", "Document", "iter_files", "load", "source_name"]
