"""The Generator backends (chat messages → text or a token stream; the base class is models/base.py).

- ``OrtGenerator`` (models/ort.py): the compiled engine, onnxruntime-genai; the default on CPU.
- ``TransformersGenerator``: a local causal LM run by transformers (the reference, and the GPU path).
- ``OpenAIChatGenerator``: any OpenAI-compatible ``/chat/completions`` endpoint (llama.cpp server, Ollama, vLLM...).

Both local backends share one decoding loop (models/decoding.py): the same prompt ids, stop rules and text.

Build them with `ragtune.models.backends.load_generator`, which picks the backend by name.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from ragtune.errors import ModelError
from ragtune.models.base import Generator
from ragtune.models.decoding import LocalGenerator
from ragtune.types import Message


class TransformersGenerator(LocalGenerator):
    """A local model run by ``model.generate`` (the reference, and the backend on a GPU); greedy by default.

    Decoding (stop rules, streamed text) is the shared loop of `LocalGenerator`; this class only turns
    ``model.generate`` into a stream of token ids, run in a worker thread that stops when the stream is closed.
    """

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "transformers", max_new_tokens: int = 256,
                 temperature: float = 0.0, optimize: str = "none", static_cache: bool = True,
                 repeat_ngram: int = 6, stop: tuple[str, ...] | list[str] = ()) -> None:
        from ragtune.models.speed import optimize_for_inference

        self.model = optimize_for_inference(model, optimize)
        self.static_cache = static_cache
        self.context_length = int(getattr(getattr(self.model, "config", None), "max_position_embeddings", 0) or 0)
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        super().__init__(tokenizer, name=name, max_new_tokens=max_new_tokens, temperature=temperature,
                         eos_ids=eos if isinstance(eos, list) else [eos] if isinstance(eos, int) else [],
                         repeat_ngram=repeat_ngram, stop=stop)

    def _tokens(self, prompt: list[int], max_new_tokens: int, temperature: float) -> Iterator[int]:
        import torch

        ids = torch.tensor([prompt], device=self.model.device)
        out: queue.Queue[int | None] = queue.Queue()
        closed = threading.Event()
        failure: list[BaseException] = []
        kwargs = self._generate_kwargs(max_new_tokens, temperature)

        def work() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs,
                                        streamer=_IdStreamer(out), stopping_criteria=[_StopWhen(closed)])
            except BaseException as e:  # re-raised in the caller's thread below
                failure.append(e)
            finally:
                out.put(None)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            while (token := out.get()) is not None:
                yield token
        finally:
            closed.set()
            thread.join()
        if failure:
            raise failure[0]

    def _generate_kwargs(self, max_new_tokens: int, temperature: float) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": temperature > 0,
                                  "eos_token_id": sorted(self.eos_ids) or None,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if self.static_cache:  # measured faster on CPU in bench/generation.py
            kwargs["cache_implementation"] = "static"
        if temperature > 0:
            kwargs["temperature"] = temperature
        else:  # greedy: neutralise sampling settings a model's generation_config may carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs


class _IdStreamer:
    """``model.generate``'s streamer hook: puts each new token id on a queue (the first call is the prompt)."""

    def __init__(self, out: queue.Queue) -> None:
        self.out, self.prompt_seen = out, False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            self.out.put(int(token))

    def end(self) -> None:
        pass


class _StopWhen:
    """A stopping criterion that ends ``model.generate`` once the consumer has closed the token stream."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_delay(response: Any, backoff: float) -> float:
    """The server's Retry-After (seconds, capped at a minute) when it gives one, else the backoff."""
    try:
        return min(60.0, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return backoff


class OpenAIChatGenerator(Generator):
    """Any OpenAI-compatible chat endpoint, over plain HTTP (httpx); streams server-sent events."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, timeout: float = 120.0, stop: tuple[str, ...] | list[str] = (),
                 deadline: float = 600.0, transport: Any = None, retries: int = 4, backoff_s: float = 0.5) -> None:
        import httpx

        self.retries, self.backoff_s = retries, backoff_s  # on 429 / 5xx: wait backoff_s · 2^attempt, then retry
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.stop = list(stop)
        # `timeout` bounds each read; `deadline` bounds a whole reply, so an endpoint that streams forever
        # or only sends keep-alives cannot hold a caller past it
        self.deadline = deadline
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def __call__(self, messages: list[Message], *, max_new_tokens: int | None = None,
                 temperature: float | None = None) -> str:
        body = self._body(messages, max_new_tokens, temperature, stream=False)
        end = time.monotonic() + self.deadline
        with self._response(body) as response:  # read piece by piece so the deadline holds for a trickling body
            raw = bytearray()
            for block in response.iter_bytes():
                self._within(end)
                raw += block
        return self._content(self._json(bytes(raw)))

    def _content(self, data: Any) -> str:
        """``choices[0].message.content`` of a whole (not streamed) reply."""
        try:
            return (data["choices"][0]["message"]["content"] or "").strip()
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"{self.base_url}/chat/completions: unexpected reply (no choices[0].message.content); "
                             "is this an OpenAI-compatible endpoint?") from None

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        body = self._body(messages, max_new_tokens, temperature, stream=True)
        end = time.monotonic() + self.deadline
        with self._response(body) as response:  # retried like a whole reply: no token has been yielded yet
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

    def _body(self, messages: list[Message], max_new_tokens: int | None, temperature: float | None,
              stream: bool) -> dict[str, Any]:
        body = {"model": self.name, "messages": messages, "stream": stream,
                "max_tokens": max_new_tokens or self.max_new_tokens,
                "temperature": self.temperature if temperature is None else temperature}
        return {**body, "stop": self.stop} if self.stop else body

    @contextmanager
    def _response(self, body: dict[str, Any]) -> Iterator[Any]:
        """The POST's response with a good status, before any of its body is read; a 429 / 5xx is retried with
        exponential backoff (or the server's Retry-After). Whole and streamed replies open here alike, so a
        stream is retried only while nothing of it has reached the caller."""
        import httpx

        for attempt in range(self.retries + 1):
            delay = None
            try:
                with self._client.stream("POST", "/chat/completions", json=body) as response:
                    if _retryable(response.status_code):
                        response.read()
                        if attempt < self.retries:  # retried below, once this connection is back in the pool
                            delay = _retry_delay(response, self.backoff_s * 2 ** attempt)
                        elif self.retries:
                            detail = response.text.strip().replace("\n", " ")[:200]
                            raise ModelError(f"{self.base_url}/chat/completions answered HTTP {response.status_code} "
                                             f"{self.retries + 1} times: {detail} (the endpoint is overloaded or "
                                             "failing; lower generator.concurrency or raise generator.retries)")
                    if delay is None:
                        self._check(response)
                        yield response
                        return
            except httpx.TransportError as e:
                raise self._unreachable(e) from None
            time.sleep(delay or 0.0)
        raise AssertionError("unreachable")  # the last attempt returns or raises

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
