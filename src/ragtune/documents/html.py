"""HTML as served on the web: the article text via trafilatura, without menus, scripts, ads and footers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ragtune.errors import InputError

# Elements that never hold article text, dropped by the last-resort fallback.
_BOILERPLATE = ("script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside", "form",
                "iframe", "button", "select")
# The same elements (and the head) for the parser-free fallback, which cannot see their nesting.
_NOT_TEXT_TAGS = "|".join(_BOILERPLATE + ("head", "title"))
_NOT_TEXT = re.compile(rf"<({_NOT_TEXT_TAGS})\b.*?</\1\s*>|<!--.*?-->", re.S | re.I)
# Bytes of UTF-8 text that was decoded as Latin-1/cp1252 somewhere upstream (mojibake: "Ã©", "â€™").
_MOJIBAKE = re.compile("[\u00c2\u00c3][\u0080-\u00bf]|\u00e2[\u0080-\u00bf\u20ac][\u0080-\u00bf\u0152-\u203a]")


def load_html(path: Path, data: bytes) -> tuple[str, dict[str, Any]]:
    """(text, metadata) of a web page; headings become ``#`` lines so the chunker can keep to them."""
    import trafilatura
    from trafilatura.utils import decode_file

    from ragtune.documents.text import checked_text

    # BOM, <meta charset>, then detection; random bytes named .html decode too, so refuse binary content
    html = checked_text(decode_file(data), path, "HTML")
    if _MOJIBAKE.search(html):
        import ftfy

        # before extraction: trafilatura drops the C1 control characters the repair needs
        html = ftfy.fix_encoding(html)
    try:
        doc = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False, include_tables=True)
        text = _body_text(doc)
        if len(text) < 200:  # short pages: trafilatura's precision can drop the only paragraph
            recall = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False,
                                                 include_tables=True, favor_recall=True)
            if len(_body_text(recall)) > len(text):
                doc, text = recall, _body_text(recall)
    except Exception as e:  # trafilatura/lxml raise many types on broken markup; report, don't crash
        raise InputError(f"{path}: HTML could not be parsed ({type(e).__name__}: {e}); check the file") from None
    title = (getattr(doc, "title", None) or "").strip() if doc is not None else ""
    if not text:
        text, fallback_title = _plain_body_text(html)
        title = title or fallback_title
    if not text:  # lxml stops at 256 levels of nesting and loses what is deeper; strip the tags instead
        text = _stripped_text(html)
    if not text.strip():
        raise InputError(f"{path}: no text found in this HTML page; check that it is not empty or script-only")
    meta: dict[str, Any] = {"title": title} if title else {}
    for key in ("author", "date", "url", "sitename"):
        value = getattr(doc, key, None) if doc is not None else None
        if value:
            meta[key] = value
    return text, meta


def _body_text(doc: Any) -> str:
    """trafilatura's extracted tree as text: one block per line pair, headings as ``#`` lines, no markup."""
    if doc is None or getattr(doc, "body", None) is None:
        return ""
    from lxml import etree
    from trafilatura.xml import xmltotxt

    body = doc.body
    etree.strip_tags(body, "hi")  # bold/italic markers would only add noise to the text
    for head in body.iter("head"):
        rend = head.get("rend") or ""
        level = int(rend[1]) if re.fullmatch(r"h[1-6]", rend) else 2
        head.text = "#" * level + " " + (head.text or "").lstrip()
    plain = xmltotxt(body, include_formatting=False)
    # trafilatura separates blocks by one newline; a blank line marks a paragraph for the chunker
    return _paragraphs(plain.splitlines())


def _plain_body_text(html: str) -> tuple[str, str]:
    """Last resort: the visible text of <body> without the obvious boilerplate elements."""
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return "", ""
    title = (root.findtext(".//title") or "").strip()
    for el in root.xpath("|".join(f"//{tag}" for tag in _BOILERPLATE)):
        el.drop_tree()
    body = root.find("body")
    return _paragraphs((body if body is not None else root).text_content().splitlines()), title


def _stripped_text(html: str) -> str:
    """The page's text without a parser: boilerplate elements dropped, then every tag."""
    import html as entities

    dropped = _NOT_TEXT.sub(" ", html)
    return _paragraphs(entities.unescape(re.sub(r"<[^>]*>", " ", dropped)).splitlines())


def _paragraphs(lines: list[str]) -> str:
    """Non-blank lines as blank-line-separated paragraphs, runs of spaces (and &nbsp;) collapsed."""
    return "\n\n".join(" ".join(line.split()) for line in lines if line.strip())
