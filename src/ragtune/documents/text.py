"""Plain text and Markdown: decode the bytes (BOM, UTF-8, then Windows-1252) and keep the text as it is."""

from __future__ import annotations

import codecs
import re
import unicodedata
from pathlib import Path
from typing import Any

from ragtune.errors import InputError

# Longest BOM first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]
_ALLOWED_CONTROLS = {"\t", "\n", "\r", "\f", "\v"}
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def decode_text(data: bytes, path: Path) -> str:
    """Decode text bytes or raise InputError: a BOM wins, then strict UTF-8, then Windows-1252."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return checked_text(data.decode(encoding), path, encoding)
            except UnicodeDecodeError:
                raise InputError(f"{path}: starts with a {encoding} byte-order mark but is not valid {encoding}; "
                                 "re-save it as UTF-8") from None
    try:
        return checked_text(data.decode("utf-8"), path, "utf-8")
    except UnicodeDecodeError:
        pass
    # Legacy Windows text is common; its strict decoder rejects the five undefined bytes,
    # and checked_text rejects binary data that happens to decode.
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not readable as text (neither UTF-8, UTF-16 with a byte-order mark, nor "
                         "Windows-1252); re-save it as UTF-8") from None
    return checked_text(text, path, "text")


def checked_text(text: str, path: Path, encoding: str) -> str:
    """Text, unless it is mostly control characters (a binary file with a text suffix); used for HTML too."""
    sample = text[:65536]
    controls = sum(1 for ch in sample if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS)
    if "\x00" in sample or controls > max(2, len(sample) // 100):
        raise InputError(f"{path}: looks like binary data, not {encoding} text; "
                         "check the file or give it the right suffix")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def markdown_title(text: str) -> str | None:
    """The first of the highest-level headings (``# Title`` usually), or None."""
    headings = [(len(m.group(1)), m.group(2).strip()) for m in _ATX_HEADING.finditer(text)]
    return min(headings, key=lambda h: h[0])[1] if headings else None


def load_text(path: Path, data: bytes) -> tuple[str, dict[str, Any]]:
    """(text, metadata) of a .txt file."""
    return decode_text(data, path), {}


def load_markdown(path: Path, data: bytes) -> tuple[str, dict[str, Any]]:
    """(text, metadata) of a Markdown file; headings stay in the text, where the chunker finds them."""
    text = decode_text(data, path)
    title = markdown_title(text)
    return text, ({"title": title} if title else {})
