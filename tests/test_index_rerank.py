"""Optional cross-encoder re-ranking: off by default, scores come from the cross-encoder when on."""

from __future__ import annotations

import pytest

from ragtune.config import load_settings
from ragtune.errors import ConfigError
from ragtune.index.embedders import SentenceTransformerEmbedder
from ragtune.index.knowledge_base import KnowledgeBase
from ragtune.types import Document


@pytest.fixture(scope="module")
def cross_encoder_dir(tiny_embedder_dir, tmp_path_factory):
    """A tiny random BERT cross-encoder (one relevance logit), built from the tiny embedder's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(tiny_embedder_dir.parent / "bert")
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_rerank_reorders_by_cross_encoder_scores(tmp_path, tiny_embedder_dir, cross_encoder_dir):
    from sentence_transformers import CrossEncoder

    texts = [f"The Zephyr unit {i} stores {i} kilowatt hours of energy." for i in range(6)]
    settings = load_settings(tmp_path, {"retrieval.rerank": True, "retrieval.reranker_model": str(cross_encoder_dir)})
    kb = KnowledgeBase(tmp_path / "kb", settings=settings, embedder=SentenceTransformerEmbedder(str(tiny_embedder_dir)))
    kb.add_documents([Document(f"d{i}", t) for i, t in enumerate(texts)])
    query = "How much energy does the Zephyr store?"
    hits = kb.search(query, k=6)
    expected = CrossEncoder(str(cross_encoder_dir)).predict([(query, h.text) for h in hits])
    assert [h.score for h in hits] == pytest.approx([float(s) for s in expected], abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_rerank_without_a_model_is_a_config_error(tmp_path, tiny_embedder_dir):
    settings = load_settings(tmp_path, {"retrieval.rerank": True})
    kb = KnowledgeBase(tmp_path / "kb", settings=settings, embedder=SentenceTransformerEmbedder(str(tiny_embedder_dir)))
    kb.add_documents([Document("d", "some text about batteries")])
    with pytest.raises(ConfigError, match="reranker_model"):
        kb.search("batteries")
