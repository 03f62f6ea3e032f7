"""Generator protocol (chat messages → text or a token stream) and its two backends.

- ``TransformersGenerator``: a local causal LM (any model `load_model_and_tokenizer` accepts), greedy by default.
- ``OpenAIChatGenerator``: any OpenAI-compatible ``/chat/completions`` endpoint (llama.cpp server, Ollama, vLLM...).

Build them with `ragtune.models.loading.load_generator`, which picks the backend by name.
"""

from __future__ import annotations

import json
import re
import threading
import time
from typing import Any, Iterator, Protocol, runtime_checkable

from ragtune.errors import ModelError
from ragtune.types import Message


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


class TransformersGenerator:
    """A local model: chat template → ``model.generate`` → text; stops at the end-of-sequence token."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "transformers", max_new_tokens: int = 256,
                 temperature: float = 0.0, optimize: str = "none", static_cache: bool = True) -> None:
        from ragtune.models.speed import optimize_for_inference

        self.model = optimize_for_inference(model, optimize)
        self.tokenizer = tokenizer
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.static_cache = static_cache
        self.last_stats: dict[str, float] = {}  # prompt_tokens, new_tokens, seconds of the latest reply

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def __call__(self, messages: list[Message], *, max_new_tokens: int | None = None,
                 temperature: float | None = None) -> str:
        import torch

        inputs, kwargs = self._inputs(messages, max_new_tokens, temperature)
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        new = output[0, inputs["input_ids"].shape[1]:]
        self._record(inputs, len(new), start)
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        inputs, kwargs = self._inputs(messages, max_new_tokens, temperature)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with torch.inference_mode():
                    out = self.model.generate(**inputs, **kwargs, streamer=streamer)
                self._record(inputs, out.shape[1] - inputs["input_ids"].shape[1], start)
            except BaseException as e:  # re-raised in the caller's thread below
                failure.append(e)
                streamer.end()

        start = time.perf_counter()
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        first = True
        for piece in streamer:
            if first:  # match __call__, which strips the reply
                piece = piece.lstrip()
                first = not piece
            if piece:
                yield piece
        thread.join()
        if failure:
            raise failure[0]

    def _inputs(self, messages: list[Message], max_new_tokens: int | None,
                temperature: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        temperature = self.temperature if temperature is None else temperature
        eos = {i for i in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None))
               if isinstance(i, int)}
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens or self.max_new_tokens,
            "stopping_criteria": [StopOnRepeat(self.tokenizer, inputs["input_ids"].shape[1])],
            "do_sample": temperature > 0,
            "eos_token_id": sorted(eos) or None,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if self.static_cache:  # measured faster on CPU in bench/generation.py
            kwargs["cache_implementation"] = "static"
        if temperature > 0:
            kwargs["temperature"] = temperature
        else:  # greedy: neutralise sampling settings a model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        # Only ids and mask: some tokenizers add token_type_ids, which causal LMs reject.
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}, kwargs

    def _record(self, inputs: dict[str, Any], new_tokens: int, start: float) -> None:
        self.last_stats = {"prompt_tokens": int(inputs["input_ids"].shape[1]), "new_tokens": int(new_tokens),
                           "seconds": time.perf_counter() - start}


class StopOnRepeat:
    """Stop when the newest complete sentence repeats an earlier one of the reply.

    Greedy decoding with a small model often loops ("X. X. X."); a repetition penalty would also punish
    copying from the passages, which RAG needs, so the loop is cut at its first repeat instead.
    """

    _SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

    def __init__(self, tokenizer: Any, prompt_tokens: int, min_chars: int = 16) -> None:
        self.tokenizer, self.prompt_tokens, self.min_chars = tokenizer, prompt_tokens, min_chars

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        done = [self.repeats(self.tokenizer.decode(row[self.prompt_tokens:], skip_special_tokens=True))
                for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def repeats(self, text: str) -> bool:
        *complete, _partial = self._SENTENCE_END.split(text)  # the last piece may still be growing
        sentences = [s.strip() for s in complete if len(s.strip()) >= self.min_chars]
        return len(sentences) >= 2 and sentences[-1] in sentences[:-1]


class OpenAIChatGenerator:
    """Any OpenAI-compatible chat endpoint, over plain HTTP (httpx); streams server-sent events."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, timeout: float = 120.0, deadline: float = 600.0,
                 transport: Any = None) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.name = model
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        # `timeout` bounds each read; `deadline` bounds a whole reply, so an endpoint that streams forever
        # or only sends keep-alives cannot hold a caller past it
        self.deadline = deadline
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def __call__(self, messages: list[Message], *, max_new_tokens: int | None = None,
                 temperature: float | None = None) -> str:
        body = self._body(messages, max_new_tokens, temperature, stream=False)
        return self._content(self._request(body))

    def _content(self, data: Any) -> str:
        """``choices[0].message.content`` of a whole (not streamed) reply."""
        try:
            return (data["choices"][0]["message"]["content"] or "").strip()
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"{self.base_url}/chat/completions: unexpected reply (no choices[0].message.content); "
                             "is this an OpenAI-compatible endpoint?") from None

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        import httpx

        body = self._body(messages, max_new_tokens, temperature, stream=True)
        end = time.monotonic() + self.deadline
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                self._check(response)
                first, events, other = True, 0, list[str]()
                for line in response.iter_lines():
                    self._within(end)
                    if not line.startswith("data:"):
                        if len(other) < 1000:
                            other.append(line)  # blank separators, comments (keep-alives), "event:" lines
                        continue
                    payload = line[5:].strip()
                    events += 1
                    if payload == "[DONE]":
                        break
                    piece = _delta(self._json(payload))
                    if first:
                        piece = piece.lstrip()
                        first = not piece
                    if piece:
                        yield piece
                if not events:  # not an event stream: a server that ignored stream=true, or garbage
                    yield self._content(self._json("\n".join(other)))
        except httpx.TransportError as e:
            raise self._unreachable(e) from None

    def _body(self, messages: list[Message], max_new_tokens: int | None, temperature: float | None,
              stream: bool) -> dict[str, Any]:
        return {"model": self.name, "messages": messages, "stream": stream,
                "max_tokens": max_new_tokens or self.max_new_tokens,
                "temperature": self.temperature if temperature is None else temperature}

    def _request(self, body: dict[str, Any]) -> Any:
        """POST and parse the JSON reply, read piece by piece so the deadline holds for a trickling body."""
        import httpx

        end = time.monotonic() + self.deadline
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                self._check(response)
                raw = bytearray()
                for block in response.iter_bytes():
                    self._within(end)
                    raw += block
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
        return self._json(bytes(raw))

    def _within(self, end: float) -> None:
        if time.monotonic() > end:
            raise ModelError(f"{self.base_url}/chat/completions: no complete reply within {self.deadline:.0f} s "
                             "(it keeps streaming or only sends keep-alives); check the server, or lower "
                             "generator.max_new_tokens")

    def _json(self, payload: str | bytes) -> Any:
        try:
            return json.loads(payload)
        except ValueError:
            shown = (payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload)[:80]
            raise ModelError(f"{self.base_url}/chat/completions: the reply is not valid JSON ({shown!r}); "
                             "is this an OpenAI-compatible endpoint?") from None

    def _check(self, response: Any) -> None:
        if response.status_code >= 400:
            response.read()
            detail = response.text.strip().replace("\n", " ")[:200]
            raise ModelError(f"{self.base_url}/chat/completions answered HTTP {response.status_code}: {detail} "
                             "(check generator.model, the API key variable and the server log)")

    def _unreachable(self, error: Exception) -> ModelError:
        import httpx

        if isinstance(error, httpx.TimeoutException):
            return ModelError(f"the chat endpoint {self.base_url} did not answer in time ({type(error).__name__}); "
                              "check that the server is not stuck or overloaded")
        return ModelError(f"cannot reach the chat endpoint {self.base_url} ({type(error).__name__}); "
                          "start the server or fix generator.base_url")


def _delta(event: Any) -> str:
    """The text piece of one streamed chunk (``choices[0].delta.content``); "" for role-only or empty events."""
    if not isinstance(event, dict):
        return ""
    choices = event.get("choices") or [{}]
    delta = choices[0].get("delta") if isinstance(choices[0], dict) else None
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""
