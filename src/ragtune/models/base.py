"""The Generator every backend is: chat messages → the reply, whole or as a stream of text pieces.

A backend subclasses `Generator` and implements ``stream``; the whole reply is the joined stream. ``count_tokens``
estimates (about four characters per token) unless the backend has a tokenizer to count with.
"""

from __future__ import annotations

from collections.abc import Iterator

from ragtune.types import Message


def estimate_tokens(text: str) -> int:
    """A token count without a tokenizer (for endpoints)."""
    return len(text) // 4 + 1  # about four characters per token for English


class Generator:
    """Chat messages → a reply; the seam `RAG`, evaluation and the server generate through."""

    name: str = "generator"

    def __call__(self, messages: list[Message], *, max_new_tokens: int | None = None,
                 temperature: float | None = None) -> str:
        """The whole reply."""
        return "".join(self.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature))

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        """The reply as text pieces, as they are produced."""
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        """How many prompt tokens ``text`` costs this model (what RAG fits its passages by)."""
        return estimate_tokens(text)
