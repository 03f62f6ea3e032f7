"""Generator protocol (chat messages → text or a token stream) and its backends.

- ``OrtGenerator`` (models/ort.py): the compiled engine, onnxruntime-genai; the default on CPU.
- ``TransformersGenerator``: a local causal LM run by transformers (the reference, and the GPU path).
- ``OpenAIChatGenerator``: any OpenAI-compatible ``/chat/completions`` endpoint (llama.cpp server, Ollama, vLLM...).

Both local backends share one decoding loop (models/decoding.py): the same prompt ids, stop rules and text.

Build them with `ragtune.models.loading.load_generator`, which picks the backend by name.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any, Iterator, Protocol, runtime_checkable

from ragtune.errors import ModelError
from ragtune.models.decoding import LocalGenerator
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
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        super().__init__(tokenizer, name=name, max_new_tokens=max_new_tokens, temperature=temperature,
                         eos_ids=eos if isinstance(eos, list) else [eos], repeat_ngram=repeat_ngram, stop=stop)

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


class OpenAIChatGenerator:
    """Any OpenAI-compatible chat endpoint, over plain HTTP (httpx); streams server-sent events."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, timeout: float = 120.0, stop: tuple[str, ...] | list[str] = ()) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.name = model
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.stop = list(stop)
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
        body = {"model": self.name, "messages": messages, "stream": stream,
                "max_tokens": max_new_tokens or self.max_new_tokens,
                "temperature": self.temperature if temperature is None else temperature}
        return {**body, "stop": self.stop} if self.stop else body

    def _request(self, body: dict[str, Any], read: Any) -> Any:
        import httpx

        try:
            response = self._client.post("/chat/completions", json=body)
        except httpx.TransportError as e:
            raise self._unreachable(e) from None
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
