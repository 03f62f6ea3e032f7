"""Embedders: the sentence-transformers folder backend and the OpenAI-compatible endpoint backend."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from ragtune.config import EmbedderSettings
from ragtune.errors import ModelError
from ragtune.index.embedders import OpenAIEmbedder, SentenceTransformerEmbedder, make_embedder


def test_sentence_transformers_folder(tiny_embedder_dir):
    embedder = make_embedder(EmbedderSettings(model=str(tiny_embedder_dir)))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert embedder.name == f"sentence-transformers:{tiny_embedder_dir.resolve()}"
    vectors = embedder(["a battery", "a cat", "a battery"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, embedder.dimension) == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], rtol=1e-5)
    assert embedder([]).shape == (0, 32)


def test_bf16_weights_give_the_fp32_vectors_within_rounding(tiny_embedder_dir):
    texts = [f"The kettle number {i} boils water in {90 + i} seconds." for i in range(16)] + ["Paris.", "x"]
    fp32 = SentenceTransformerEmbedder(str(tiny_embedder_dir), precision="fp32")
    bf16 = SentenceTransformerEmbedder(str(tiny_embedder_dir), precision="bf16")
    a, b = fp32(texts), bf16(texts)  # a batch: the bf16 copy of the weights
    assert bf16.bf16 and not fp32.bf16 and b.dtype == np.float32
    assert str(next(bf16._bf16_model.parameters()).dtype) == "torch.bfloat16"
    assert np.all((a * b).sum(1) > 0.99) and not np.array_equal(a, b)
    assert np.array_equal(bf16(texts[:2]), fp32(texts[:2]))  # a short call (a query) stays fp32
    assert fp32.name == bf16.name  # same model: vectors from either mix in one index


def test_packaged_default_is_named_without_loading(monkeypatch):
    embedder = make_embedder(EmbedderSettings())
    assert embedder.name == "sentence-transformers:all-MiniLM-L6-v2"
    assert embedder._model is None  # nothing loaded until the first call
    assert (embedder.folder / "config.json").exists()


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a local sentence-transformers folder"):
        make_embedder(EmbedderSettings(model=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="cannot be loaded"):
        make_embedder(EmbedderSettings(model=str(tmp_path / "empty")))(["x"])


def _endpoint(calls):
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((request.url.path, request.headers.get("authorization"), body))
        data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]} for i, t in enumerate(body["input"])]
        return httpx.Response(200, json={"data": list(reversed(data)), "model": body["model"]})
    return httpx.MockTransport(handle)


def test_openai_endpoint_batches_orders_and_normalises(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test")
    calls = []
    embedder = OpenAIEmbedder("nomic", base_url="http://local:11434/v1/", api_key_env="MY_KEY",
                              batch_size=2, transport=_endpoint(calls))
    vectors = embedder(["abc", "a", "abcd"])
    assert [len(c[2]["input"]) for c in calls] == [2, 1]
    assert calls[0][0] == "/v1/embeddings" and calls[0][1] == "Bearer sk-test" and calls[0][2]["model"] == "nomic"
    expected = np.array([[3, 1, 0], [1, 1, 0], [4, 1, 0]], np.float32)
    np.testing.assert_allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), rtol=1e-6)
    assert embedder.dimension == 3 and embedder.name == "openai:http://local:11434/v1:nomic"


def test_openai_endpoint_errors_are_one_line():
    failing = httpx.MockTransport(lambda r: httpx.Response(401, text="bad key"))
    with pytest.raises(ModelError, match="HTTP 401"):
        OpenAIEmbedder("m", base_url="http://x/v1", transport=failing)(["a"])
    garbage = httpx.MockTransport(lambda r: httpx.Response(200, json={"nope": 1}))
    with pytest.raises(ModelError, match="not an OpenAI embeddings response"):
        OpenAIEmbedder("m", base_url="http://x/v1", transport=garbage)(["a"])
