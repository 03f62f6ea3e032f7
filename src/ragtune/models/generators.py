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


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_delay(response: Any, backoff: float) -> float:
    """The server's Retry-After (seconds, capped at a minute) when it gives one, else the backoff."""
    try:
        return min(60.0, max(0.0, float(response.headers.get("retry-after", ""))))
    except ValueError:
        return backoff


class OpenAIChatGenerator:
    """Any OpenAI-compatible chat endpoint, over plain HTTP (httpx); streams server-sent events."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, timeout: float = 120.0, retries: int = 4,
                 backoff_s: float = 0.5) -> None:
        import httpx

        self.retries, self.backoff_s = retries, backoff_s  # on 429 / 5xx: wait backoff_s · 2^attempt, then retry
        self.base_url = base_url.rstrip("/")
        self.name = model
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def __call__(self, messages: list[Message], *, max_new_tokens: int | None = None,
                 temperature: float | None = None) -> str:
        body = self._body(messages, max_new_tokens, temperature, stream=False)
        data = self._request(body, lambda r: r.json())
        try:
            return (data["choices"][0]["message"]["content"] or "").strip()
        except (KeyError, IndexError, TypeError):
            raise ModelError(f"{self.base_url}/chat/completions: unexpected reply (no choices[0].message.content); "
                             "is this an OpenAI-compatible endpoint?") from None

    def stream(self, messages: list[Message], *, max_new_tokens: int | None = None,
               temperature: float | None = None) -> Iterator[str]:
        import httpx

        body = self._body(messages, max_new_tokens, temperature, stream=True)
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                self._check(response)
                first = True
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, "event:" lines
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    piece = (json.loads(payload).get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                    if first:
                        piece = piece.lstrip()
                        first = not piece
                    if piece:
                        yield piece
        except httpx.TransportError as e:
            raise self._unreachable(e) from None

    def _body(self, messages: list[Message], max_new_tokens: int | None, temperature: float | None,
              stream: bool) -> dict[str, Any]:
        return {"model": self.name, "messages": messages, "stream": stream,
                "max_tokens": max_new_tokens or self.max_new_tokens,
                "temperature": self.temperature if temperature is None else temperature}

    def _request(self, body: dict[str, Any], read: Any) -> Any:
        import httpx

        for attempt in range(self.retries + 1):
            try:
                response = self._client.post("/chat/completions", json=body)
            except httpx.TransportError as e:
                raise self._unreachable(e) from None
            if not _retryable(response.status_code) or attempt == self.retries:
                break
            time.sleep(_retry_delay(response, self.backoff_s * 2 ** attempt))
        if _retryable(response.status_code) and self.retries:
            detail = response.text.strip().replace("\n", " ")[:200]
            raise ModelError(f"{self.base_url}/chat/completions answered HTTP {response.status_code} "
                             f"{self.retries + 1} times: {detail} (the endpoint is overloaded or failing; "
                             "lower generator.concurrency or raise generator.retries)")
        self._check(response)
        return read(response)

    def _check(self, response: Any) -> None:
        if response.status_code >= 400:
            response.read()
            detail = response.text.strip().replace("\n", " ")[:200]
            raise ModelError(f"{self.base_url}/chat/completions answered HTTP {response.status_code}: {detail} "
                             "(check generator.model, the API key variable and the server log)")

    def _unreachable(self, error: Exception) -> ModelError:
        return ModelError(f"cannot reach the chat endpoint {self.base_url} ({type(error).__name__}); "
                          "start the server or fix generator.base_url")
