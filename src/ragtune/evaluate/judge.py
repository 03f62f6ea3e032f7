"""Optional LLM judge of groundedness, for users who point ragtune at a bigger model or endpoint.

The default groundedness (metrics.groundedness) needs no model: the share of the answer's content words found
in the passages. A judge reads passages and answer and says whether every claim is supported; its verdict is
stored as ``scores.judge_grounded`` (1 yes, 0 no, null when the reply is neither) beside the default.

    ragtune eval qa.jsonl --kb kb --judge gpt-4o-mini --judge-url http://host:8000/v1   (an OpenAI-compatible endpoint)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

JUDGE_SYSTEM = ("You check answers against sources. Reply with exactly one word: yes if every claim in the answer "
                "is supported by the passages, no otherwise.")


def judge_messages(answer: str, passages: Sequence[str]) -> list[dict[str, str]]:
    numbered = "\n\n".join(f"[{n}] {p}" for n, p in enumerate(passages, 1))
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": f"Passages:\n\n{numbered}\n\nAnswer: {answer}\n\nSupported? yes or no."}]


def judge_grounded(judge: Any, answer: str, passages: Sequence[str]) -> float | None:
    """1.0 when the judge says the answer is supported, 0.0 when it says not, None when it cannot tell."""
    if not passages or not answer.strip():
        return None
    reply = judge(judge_messages(answer, passages)).strip().lower()
    if reply.startswith("yes"):
        return 1.0
    if reply.startswith("no"):
        return 0.0
    return None
