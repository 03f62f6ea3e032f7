"""The one decoding loop of every local backend: chat template → engine tokens → stop rules → text pieces.

A backend (transformers, onnxruntime-genai) only supplies ``_tokens``: the engine's raw stream of next-token
ids for a prompt. Everything that decides what the user sees lives here, once: the prompt ids (the tokenizer's
chat template, byte-identical for both backends), the end-of-sequence tokens, the token limit, the
repetition stop and the streamed text. ``__call__`` is the joined stream, so a whole reply and a streamed one
can never differ.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from ragtune.errors import PromptTooLongError
from ragtune.models.base import Generator
from ragtune.types import Message


class RepetitionStop:
    """Cut a reply when a run of ``n`` new tokens repeats an earlier run of the same reply.

    Greedy decoding with a small model loops ("X Y Z. X Y Z. ..."), often inside a sentence, until the token
    cap. A repetition penalty would also punish copying from the passages, which RAG needs; this only fires on
    the model repeating itself, and cuts the reply where the repeat began. ``n = 0`` never stops.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._seen: set[tuple[int, ...]] = set()

    @property
    def holdback(self) -> int:
        """Tokens to hold back from the stream, so that a repeat found later can still be cut cleanly."""
        return max(self.n - 1, 0)

    def cut(self, tokens: list[int]) -> int | None:
        """Called after each new token: the length to cut the reply to, or None to go on."""
        if self.n <= 0 or len(tokens) < self.n:
            return None
        gram = tuple(tokens[-self.n:])
        if gram in self._seen:
            return len(tokens) - self.n
        self._seen.add(gram)
        return None


class TextStream:
    """Decoded text → pieces whose concatenation is the stripped reply.

    Each call is given the whole reply decoded so far (a few hundred tokens at most) and returns what is new;
    trailing white space and an unfinished multi-byte character wait for the next call.
    """

    def __init__(self) -> None:
        self.sent = ""

    def piece(self, text: str, final: bool = False) -> str:
        text = text.lstrip()
        text = text.rstrip() if final else text.rstrip().rstrip("\ufffd")
        if not text.startswith(self.sent) or len(text) == len(self.sent):
            return ""  # nothing new (or a tokenizer that rewrote earlier text: keep what was sent)
        new, self.sent = text[len(self.sent):], text
        return new


def cut_at_stop(text: str, stops: Iterable[str]) -> int | None:
    """Where the first stop string starts in ``text`` (None when there is none)."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


class LocalGenerator(Generator):
    """What both local backends share; a subclass implements ``_tokens``."""

    context_length = 0  # tokens the model can attend to (0: unknown); a longer prompt is refused before decoding

    def __init__(self, tokenizer: Any, *, name: str, max_new_tokens: int = 256, temperature: float = 0.0,
                 eos_ids: Iterable[int] = (), repeat_ngram: int = 6, stop: Iterable[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        from ragtune.models.loading import turn_end_id  # Gemma's <end_of_turn> ends a reply like end-of-sequence

        self.eos_ids = {i for i in (*eos_ids, tokenizer.eos_token_id, turn_end_id(tokenizer)) if isinstance(i, int)}
        self.repeat_ngram = repeat_ngram
        self.stop = tuple(stop)  # texts that end a reply (not included), like the OpenAI API's "stop"
        # the latest reply: prompt_tokens, new_tokens (generated), kept_tokens (after a repetition cut), seconds,
        # and why it stopped: "eos" | "repeat" | "stop" (a stop text) | "length"
        self.last_stats: dict[str, Any] = {}

    def count_tokens(self, text: str) -> int:
        """Exact: the model's own tokenizer."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The chat template's prompt as token ids (no extra special tokens: the template has its own)."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __call__(self, messages: list[Message], *, max_new_tokens: int | None = None,
                 temperature: float | None = None) -> str:
        return "".join(self.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature))

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        prompt = self.prompt_ids(messages)
        if self.context_length and len(prompt) >= self.context_length:
            raise PromptTooLongError(f"model '{self.name}': the prompt has {len(prompt)} tokens, more than its "
                                     f"context of {self.context_length}; shorten the question or messages, or "
                                     "lower rag.max_context_tokens or retrieval.k")
        limit = max_new_tokens or self.max_new_tokens
        temperature = self.temperature if temperature is None else temperature
        repeat, stream = RepetitionStop(self.repeat_ngram), TextStream()
        # tokens held back from the stream so that a cut (a repeat, a stop text) never takes back sent text
        hold = max(repeat.holdback, max((len(s) for s in self.stop), default=0))
        new: list[int] = []
        generated, stop, end = 0, "length", None
        start = time.perf_counter()
        tokens = self._tokens(prompt, limit, temperature)
        try:
            for token in tokens:
                if token in self.eos_ids:
                    stop = "eos"
                    break
                new.append(token)
                generated += 1
                cut = repeat.cut(new)
                if cut is not None:
                    del new[cut:]
                    stop = "repeat"
                    break
                if self.stop and (end := cut_at_stop(self._decode(new), self.stop)) is not None:
                    stop = "stop"
                    break
                if len(new) >= limit:
                    break
                if piece := stream.piece(self._decode(new[:max(len(new) - hold, 0)])):
                    yield piece
        finally:
            getattr(tokens, "close", lambda: None)()  # an engine still running stops here
            self.last_stats = {"prompt_tokens": len(prompt), "new_tokens": generated, "kept_tokens": len(new),
                               "seconds": time.perf_counter() - start, "stop": stop}
        if piece := stream.piece(self._decode(new)[:end], final=True):
            yield piece

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _tokens(self, prompt: list[int], max_new_tokens: int, temperature: float) -> Iterator[int]:
        """The engine's next-token ids for ``prompt``; greedy when temperature is 0. Closing it stops the engine."""
        raise NotImplementedError
