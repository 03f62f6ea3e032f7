"""The official `openai` client against a live server on loopback: models, chat (plain and streamed), embeddings."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from _serve_util import CitingGenerator, live_server, make_kb, make_settings
from ragtune.serve import create_app

KEY = "sk-ragtune-test-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_embedder_dir, tiny_lm_dir):
    from ragtune.models.backends import load_generator

    settings = make_settings(tiny_embedder_dir)
    kb = make_kb(tmp_path_factory.mktemp("openai") / "kb", settings)
    base = load_generator(str(tiny_lm_dir), max_new_tokens=8)  # a real TransformersGenerator, random weights
    app = create_app(kb, base=base, finetuned=CitingGenerator(), settings=settings, api_key=KEY)
    with live_server(app) as url:
        yield url, kb, base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_models_lists_every_configured_configuration_and_the_embedder(client, server):
    ids = [m.id for m in client.models.list()]
    assert ids[:4] == ["base", "rag", "finetuned", "finetuned+rag"]
    assert server[1].embedder.name in ids
    assert client.models.retrieve("rag").id == "rag"


def test_chat_with_the_real_tiny_model(client, server):
    reply = client.chat.completions.create(model="base", messages=[{"role": "user", "content": "Hello there"}],
                                           max_tokens=5)
    assert reply.object == "chat.completion" and reply.model == "base"
    assert reply.choices[0].message.role == "assistant" and reply.choices[0].finish_reason == "stop"
    # the served text is exactly what the same model replies to the same conversation when called directly
    expected = server[2]([{"role": "user", "content": "Hello there"}], max_new_tokens=5)
    assert reply.choices[0].message.content == expected and expected
    assert not hasattr(reply.choices[0].message, "citations") or reply.choices[0].message.citations is None


def test_rag_answer_carries_citations_and_passages(client):
    reply = client.chat.completions.create(
        model="finetuned+rag", messages=[{"role": "user", "content": "How long is the Zorblax warranty?"}])
    message = reply.choices[0].message
    extra = message.model_extra
    assert message.content.endswith("[1]")
    assert extra["abstained"] is False
    (citation,) = extra["citations"]
    passages = extra["passages"]
    assert citation["n"] == 1 and citation["source"] == passages[0]["source"]
    assert citation["text"] == passages[0]["text"]
    assert passages[0]["source"].endswith("zorblax.md")  # BM25 finds the one document naming the product
    assert message.content.removesuffix(" [1]") in passages[0]["text"]


def test_streamed_rag_answer_arrives_in_pieces_with_citations_in_the_last_chunk(client):
    stream = client.chat.completions.create(
        model="finetuned+rag", stream=True, messages=[{"role": "user", "content": "Who founded Quillon Appliances?"}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert len(pieces) > 3  # word by word, not one blob
    text = "".join(pieces)
    assert "Mira Osgood" in text and text.endswith("[1]")
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop"
    citations = last.delta.model_extra["citations"]
    assert citations[0]["n"] == 1 and citations[0]["source"].endswith("quillon.txt")
    assert len({c.id for c in chunks}) == 1


def test_streaming_with_the_real_tiny_model_through_rag(client):
    stream = client.chat.completions.create(model="rag", stream=True, max_tokens=6,
                                            messages=[{"role": "user", "content": "Grelt toaster levels?"}])
    chunks = list(stream)
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop"
    assert last.delta.model_extra["passages"][0]["source"].endswith("grelt.md")
    assert all(c.model == "rag" for c in chunks)


def test_embeddings_match_the_knowledge_base_embedder(client, server):
    kb = server[1]
    name = kb.embedder.name
    texts = ["kettle warranty", "toaster crumbs"]
    expected = kb.embedder(texts)
    as_float = client.embeddings.create(model=name, input=texts, encoding_format="float")
    as_base64 = client.embeddings.create(model=name, input=texts)  # the client asks for base64 by default
    for result in (as_float, as_base64):
        got = np.array([d.embedding for d in result.data], dtype=np.float32)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert [d.index for d in result.data] == [0, 1]


def test_unknown_model_is_a_404_the_client_understands(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    assert "rag" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")


def test_wrong_or_missing_key_is_a_401(server):
    for key in ("sk-wrong", ""):
        bad = openai.OpenAI(base_url=server[0] + "/v1", api_key=key or "unused", max_retries=0,
                            default_headers={} if key else {"Authorization": ""})
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.models.list()
        assert caught.value.code == "invalid_api_key"


def test_bad_requests_are_400s_with_the_field_named(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="rag", messages=[])
    assert caught.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="rag", messages=[{"role": "user", "content": "x"}], temperature=9)
    assert caught.value.param == "temperature"
