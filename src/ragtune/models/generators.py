"""Generator protocol (chat messages → text or a token stream) and its named backends.

PLACEHOLDER: the models helper fills in the backends; the protocol below is the contract.
"""

from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


@runtime_checkable
class Generator(Protocol):
    name: str

    def __call__(self, messages: list[Message], *, max_new_tokens: int | None = None,
                 temperature: float | None = None) -> str:
        """The whole reply."""
        ...

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        """The reply as text pieces, as they are produced."""
        ...
