"""What the task's answers look like, for `ragtune choose`: the answer cap tuning sets, and the shape synthetic
training answers are held to."""

from __future__ import annotations

from typing import Any

from ragtune.evaluate.qa import QAItem


def answer_cap(items: list[QAItem]) -> int:
    """``generator.max_new_tokens`` from the gold answers' length: room for the longest usual answer and a
    citation, so short answers stop early and long ones are not cut (about 4 characters per token)."""
    lengths = [len(a) // 4 + 1 for it in items for a in it.answers[:1]]
    return max(24, min(256, round(1.5 * p90(lengths, 64)) + 16))


def answer_words(items: list[QAItem]) -> int:
    """The length in words that 90% of the gold answers keep within (their first answer each)."""
    return p90([len(it.answers[0].split()) for it in items if it.answers], 0)


def shaped(pairs: list[Any], items: list[QAItem], floor: int = 5) -> tuple[list[Any], int]:
    """Synthetic pairs whose answers are no longer than the task's, and the limit: when 90% of the gold answers
    keep within N words, pairs answering in more than max(N, floor) words (a whole sentence where the task wants
    a span) are dropped, unless none would be left. A model trained on sentences answers in sentences, which a
    span metric (token F1) scores low and the answer cap cuts before its citation."""
    limit = max(answer_words(items), floor)
    kept = [p for p in pairs if len(p.answer.split()) <= limit]
    return kept or pairs, limit


def p90(values: list[int], empty: int) -> int:
    """The value 90% of ``values`` keep within (``empty`` when there are none)."""
    ordered = sorted(values)
    return ordered[int(0.9 * (len(ordered) - 1))] if ordered else empty
