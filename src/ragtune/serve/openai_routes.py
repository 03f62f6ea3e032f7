"""The OpenAI-compatible routes: /v1/models, /v1/chat/completions (plain and SSE stream), /v1/embeddings.

RAG answers carry their sources in extension fields the official client keeps as extras:
``choices[0].message.citations`` / ``.passages`` / ``.abstained`` (and in the delta of the last stream chunk).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ragtune.errors import RagtuneError
from ragtune.rag import last_user_message
from ragtune.serve.answering import Params, answer, citations_json, passages_json, retrieve, stream_answer
from ragtune.serve.errors import APIError, error_body, from_ragtune_error
from ragtune.serve.schemas import ChatRequest, EmbeddingRequest
from ragtune.serve.state import Configuration, ServeState
from ragtune.types import Answer

log = logging.getLogger("ragtune.serve")
router = APIRouter(prefix="/v1")
_END = object()
STARTED = int(time.time())


def state_of(request: Request) -> ServeState:
    return request.app.state.ragtune


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    state = state_of(request)
    data = [_model_card(name, conf.description, uses_rag=conf.uses_rag) for name, conf in state.configurations.items()]
    if state.embedder is not None:
        data.append(_model_card(state.embedder.name, "the knowledge base's embedder (for /v1/embeddings)",
                                kind="embedding"))
    return {"object": "list", "data": data}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    for card in (await list_models(request))["data"]:
        if card["id"] == model_id:
            return card
    raise _unknown_model(model_id, state_of(request))


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request) -> dict[str, Any] | StreamingResponse:
    state = state_of(request)
    conf = state.configurations.get(body.model)
    if conf is None:
        raise _unknown_model(body.model, state)
    params = Params(max_new_tokens=body.max_completion_tokens or body.max_tokens, temperature=body.temperature,
                    k=body.k, where=body.where)
    messages = body.chat()
    if conf.uses_rag:
        last_user_message(messages)  # a 400 now, before a stream has started
    completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
    if body.stream:
        return StreamingResponse(_sse(conf, messages, params, completion_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    started = time.perf_counter()
    prepared = await run_in_threadpool(retrieve, conf, messages, params)  # searches run side by side
    async with conf.slots:  # then wait for the model without holding a worker thread
        ans = await run_in_threadpool(answer, conf, messages, params, prepared)
    log.info("chat answered", extra={"model": conf.name, "stream": False, "chars": len(ans.text),
                                     "seconds": round(time.perf_counter() - started, 3)})
    message: dict[str, Any] = {"role": "assistant", "content": ans.text, "refusal": None}
    if conf.uses_rag:
        message.update(_extensions(ans))
    return {"id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": conf.name,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}]}


async def _sse(conf: Configuration, messages: list[dict[str, str]], params: Params,
               completion_id: str) -> AsyncIterator[str]:
    """Server-sent events exactly as OpenAI sends them: ``data: {chunk}\\n\\n`` ... ``data: [DONE]\\n\\n``."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        payload = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": conf.name,
                   "system_fingerprint": None,
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    started = time.perf_counter()
    yield chunk({"role": "assistant", "content": ""})
    pieces = None
    try:
        prepared = await run_in_threadpool(retrieve, conf, messages, params)
        async with conf.slots:
            pieces = stream_answer(conf, messages, params, prepared)
            while True:
                item = await run_in_threadpool(next, pieces, _END)
                if item is _END:
                    break
                if isinstance(item, Answer):
                    yield chunk(_extensions(item) if conf.uses_rag else {}, finish="stop")
                elif item:
                    yield chunk({"content": item})
    except Exception as e:  # headers are sent: report the failure in-band, as OpenAI does
        err = from_ragtune_error(e) if isinstance(e, RagtuneError) else APIError(500, "generation failed; see "
                                                                                      "the server log")
        if not isinstance(e, RagtuneError):
            log.exception("stream failed", extra={"model": conf.name})
        yield f"data: {json.dumps(error_body(err.message, err.type, err.param, err.code))}\n\n"
    finally:
        try:  # the client may have gone: stop the generator (unless a worker thread is still inside it)
            if pieces is not None:
                pieces.close()
        except ValueError:
            pass
    log.info("chat answered", extra={"model": conf.name, "stream": True,
                                     "seconds": round(time.perf_counter() - started, 3)})
    yield "data: [DONE]\n\n"


@router.post("/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    state = state_of(request)
    embedder = state.embedder
    if embedder is None or body.model not in _embedding_names(embedder):
        raise _unknown_model(body.model, state)
    texts = body.texts()
    vectors = np.asarray(await run_in_threadpool(embedder, texts), dtype=np.float32)
    data = []
    for i, vector in enumerate(vectors):
        value: Any = (base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
                      if body.encoding_format == "base64" else vector.tolist())
        data.append({"object": "embedding", "index": i, "embedding": value})
    words = sum(len(t.split()) for t in texts)  # an estimate: the embedder's tokenizer is not exposed
    return {"object": "list", "data": data, "model": body.model,
            "usage": {"prompt_tokens": words, "total_tokens": words}}


def _extensions(ans: Answer) -> dict[str, Any]:
    return {"citations": citations_json(ans), "passages": passages_json(ans), "abstained": bool(ans.abstained)}


def _model_card(name: str, description: str, *, uses_rag: bool = False, kind: str = "chat") -> dict[str, Any]:
    return {"id": name, "object": "model", "created": STARTED, "owned_by": "ragtune",
            "type": kind, "rag": uses_rag, "description": description}


def _embedding_names(embedder: Any) -> set[str]:
    name = str(embedder.name)
    return {name, name.rstrip("/").rsplit("/", 1)[-1]}


def _unknown_model(name: str, state: ServeState) -> APIError:
    available = list(state.configurations) + ([state.embedder.name] if state.embedder is not None else [])
    return APIError(404, f"the model '{name}' does not exist here; available: {', '.join(available) or 'none'} "
                         "(see GET /v1/models)", code="model_not_found", param="model")
