"""Split a Document into token-bounded, overlapping chunks that keep to headings and paragraphs.

1. The text is cut into blocks: ``#`` heading lines, and paragraphs separated by blank lines.
2. A block longer than ``chunk_tokens`` is split by sentences, then lines, then words, then characters.
3. The pieces are packed in order into chunks of at most ``chunk_tokens``; a heading always starts a new chunk.
4. A chunk after a size break starts with the last whole sentences of the previous one (at most
   ``overlap_tokens``; the last words when one sentence is longer), so no fact is cut in half.

Every chunk's text is ``document.text[start:end]``: offsets are exact and the chunks cover all text.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from typing import Any, NamedTuple

from ragtune.documents.tokens import TokenCounter, default_counter
from ragtune.errors import ConfigError
from ragtune.types import Chunk, Document

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
# Gaps (group 1) between pieces, coarse to fine: sentences, lines, words. Characters come last.
_GAPS = [
    re.compile(r"[.!?…;:]+[\"'”’)\]]*(\s+)"),
    re.compile(r"(\s*\n\s*)"),
    re.compile(r"(\s+)"),
]
_SENTENCE_OR_BLOCK_GAP = re.compile(r"[.!?…]+[\"'”’)\]]*(\s+)|(\n[ \t]*\n\s*)")
_WORD_START = re.compile(r"\s(?=\S)")
_MAX_CHARS_PER_TOKEN = 12  # caps chunks of text a tokenizer counts as one [UNK] (e.g. a 100 KB base64 line)


class Unit(NamedTuple):
    start: int
    end: int
    tokens: int
    heading: str | None  # the heading text when this unit is a heading line


class Chunker:
    """``Chunker(chunk_tokens=256, overlap_tokens=32)(document) -> list[Chunk]``; deterministic."""

    def __init__(self, chunk_tokens: int = 256, overlap_tokens: int = 32,
                 count_tokens: TokenCounter | None = None):
        if chunk_tokens < 8:
            raise ConfigError(f"chunking.chunk_tokens: {chunk_tokens} is too small; use 8 or more (default 256)")
        if not 0 <= overlap_tokens <= chunk_tokens // 2:
            raise ConfigError(f"chunking.overlap_tokens: {overlap_tokens} must be between 0 and half of "
                              f"chunk_tokens ({chunk_tokens // 2})")
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.max_chars = chunk_tokens * _MAX_CHARS_PER_TOKEN
        self._count = count_tokens

    @classmethod
    def from_settings(cls, settings: Any, count_tokens: TokenCounter | None = None) -> Chunker:
        """From ``Settings.chunking`` (a ChunkingSettings)."""
        return cls(settings.chunk_tokens, settings.overlap_tokens, count_tokens)

    def count_tokens(self, text: str) -> int:
        if self._count is None:
            self._count = default_counter()  # loaded on first use, cached per process
        return self._count(text)

    def __call__(self, document: Document) -> list[Chunk]:
        text = document.text
        blocks = _blocks(text)
        units = [u for block in blocks for u in self._units(text, block)]
        headings = [(s, h) for s, _, h in blocks if h is not None]
        return [self._chunk(document, i, s, e, n, headings) for i, (s, e, n) in enumerate(self._pack(text, units))]

    # -- splitting -----------------------------------------------------------------------------

    def _fits(self, tokens: int, chars: int, limit: int) -> bool:
        return tokens <= limit and chars <= self.max_chars

    def _units(self, text: str, block: tuple[int, int, str | None]) -> list[Unit]:
        start, end, heading = block
        n = self.count_tokens(text[start:end]) if end - start <= self.max_chars else -1  # -1: too long anyway
        if 0 <= n and self._fits(n, end - start, self.chunk_tokens):
            return [Unit(start, end, n, heading)]
        return [Unit(s, e, t, None) for s, e, t in self._split(text, start, end, 0, self.chunk_tokens)]

    def _split(self, text: str, start: int, end: int, level: int, limit: int) -> list[tuple[int, int, int]]:
        """Pieces of text[start:end], each within ``limit`` tokens, at the coarsest gaps that suffice."""
        if level == len(_GAPS):
            return self._split_chars(text, start, end, limit)
        pieces = _spans(text, start, end, _GAPS[level])
        if len(pieces) <= 1:
            return self._split(text, start, end, level + 1, limit)
        out = []
        for s, e in pieces:
            if e - s <= self.max_chars and self._fits(n := self.count_tokens(text[s:e]), e - s, limit):
                out.append((s, e, n))
            else:
                out += self._split(text, s, e, level + 1, limit)
        return out

    def _split_chars(self, text: str, start: int, end: int, limit: int) -> list[tuple[int, int, int]]:
        out = []
        while start < end:
            lo, hi = start + 1, min(end, start + self.max_chars)
            if self.count_tokens(text[start:hi]) <= limit:
                lo = hi
            while lo < hi:  # binary search: the longest prefix within the limit
                mid = (lo + hi + 1) // 2
                if self.count_tokens(text[start:mid]) <= limit:
                    lo = mid
                else:
                    hi = mid - 1
            out.append((start, lo, self.count_tokens(text[start:lo])))
            start = lo
        return out

    # -- packing -------------------------------------------------------------------------------

    def _pack(self, text: str, units: list[Unit]) -> list[tuple[int, int, int]]:
        limit = self.chunk_tokens
        spans: list[tuple[int, int, int]] = []
        pending = units[::-1]  # a stack: pop() gives the next unit, append() puts one back
        current: list[Unit] = []
        overlap: tuple[int, int] | None = None  # (start, tokens) carried over from the previous chunk

        def emit() -> None:
            nonlocal overlap
            start = overlap[0] if overlap else current[0].start
            n = self.count_tokens(text[start:current[-1].end])
            # counts of pieces need not add up exactly for every tokenizer: trim until the real count fits
            while not self._fits(n, current[-1].end - start, limit) and (len(current) > 1 or overlap):
                if len(current) > 1:
                    pending.append(current.pop())
                else:
                    start, overlap = current[0].start, None
                n = self.count_tokens(text[start:current[-1].end])
            spans.append((start, current[-1].end, n))
            current.clear()
            overlap = None

        while pending or current:
            if not pending:
                emit()  # may put units back, hence the loop condition
                continue
            unit = pending.pop()
            used = (overlap[1] if overlap else 0) + sum(u.tokens for u in current)
            first = overlap[0] if overlap else (current[0].start if current else unit.start)
            section_break = unit.heading is not None and any(u.heading is None for u in current)
            size_break = not self._fits(used + unit.tokens, unit.end - first, limit)
            if current and (section_break or size_break):
                if not section_break and all(u.heading is not None for u in current) and limit - used >= 8:
                    # keep a heading with its text: split the paragraph finer to fill the room left
                    finer = self._split(text, unit.start, unit.end, 0, limit - used)
                    if len(finer) > 1:
                        pending += [Unit(s, e, n, None) for s, e, n in reversed(finer)]
                        continue
                pending.append(unit)
                emit()  # a heading starts a new chunk, with no overlap across sections
                following = pending[-1]
                if not section_break and following.heading is None:
                    overlap = self._overlap(text, spans[-1][0], spans[-1][1], following.tokens)
                continue
            current.append(unit)
        return spans

    def _overlap(self, text: str, start: int, end: int, next_tokens: int) -> tuple[int, int] | None:
        """(start, tokens) of the previous chunk's tail to repeat: whole sentences when they fit."""
        budget = min(self.overlap_tokens, self.chunk_tokens - next_tokens)
        if budget <= 0:
            return None
        sentence_starts = [m.end() for m in _SENTENCE_OR_BLOCK_GAP.finditer(text, start, end)]
        best = _longest_tail(text, sentence_starts, end, budget, self.count_tokens)
        if best is None:  # the last sentence alone is over the budget: take its last words
            best = _longest_tail(text, [m.end() for m in _WORD_START.finditer(text, start, end)], end, budget,
                                 self.count_tokens)
        return best

    def _chunk(self, document: Document, position: int, start: int, end: int, tokens: int,
               headings: list[tuple[int, str]]) -> Chunk:
        chunk_text = document.text[start:end]
        digest = hashlib.sha1(f"{document.source}\x00{position}\x00{chunk_text}".encode()).hexdigest()[:20]
        meta: dict[str, Any] = {"start": start, "end": end, "tokens": tokens}
        i = bisect.bisect_right(headings, start, key=lambda h: h[0])
        if i:
            meta["heading"] = headings[i - 1][1]
        if document.metadata.get("page_starts"):
            meta["page"] = page_at(document.metadata["page_starts"], start)
            meta["page_end"] = page_at(document.metadata["page_starts"], end - 1)
        for key in ("title", "tags"):
            if document.metadata.get(key):
                meta[key] = document.metadata[key]
        return Chunk(id=digest, source=document.source, text=chunk_text, position=position, metadata=meta)


def page_at(page_starts: list[int], offset: int) -> int:
    """1-based page of a character offset, given each page's start offset in the text."""
    return max(1, bisect.bisect_right(page_starts, offset))


def _blocks(text: str) -> list[tuple[int, int, str | None]]:
    """(start, end, heading) of each heading line and each blank-line-separated paragraph, trimmed."""
    blocks: list[tuple[int, int, str | None]] = []
    para: list[int] | None = None  # [start, end] of the paragraph being gathered
    pos, in_fence = 0, False
    while pos <= len(text):
        nl = text.find("\n", pos)
        line_end = len(text) if nl == -1 else nl
        line = text[pos:line_end]
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence  # a "# comment" inside a code block is not a heading
        heading = _HEADING.match(line) if stripped.startswith("#") and not in_fence else None
        if not line.strip() or heading:
            if para:
                blocks.append((para[0], para[1], None))
                para = None
            if heading:
                s, e = _trim(text, pos, line_end)
                blocks.append((s, e, heading.group(2).strip() or heading.group(1)))
        else:
            s, e = _trim(text, pos, line_end)
            para = [para[0] if para else s, e]
        pos = line_end + 1
    if para:
        blocks.append((para[0], para[1], None))
    return blocks


def _spans(text: str, start: int, end: int, gap: re.Pattern) -> list[tuple[int, int]]:
    """The non-blank pieces of text[start:end] between the matches' group 1."""
    out, pos = [], start
    for m in gap.finditer(text, start, end):
        g_start, g_end = m.span(1)
        if g_start >= pos:
            out.append((pos, g_start))
            pos = g_end
    out.append((pos, end))
    return [t for t in (_trim(text, s, e) for s, e in out) if t[0] < t[1]]


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _longest_tail(text: str, starts: list[int], end: int, budget: int, count) -> tuple[int, int] | None:
    best = None
    for s in reversed(starts):
        if s >= end:
            continue
        n = count(text[s:end])
        if n > budget:
            break
        best = (s, n)
    return best
