"""One typed Settings model: defaults < ragtune.toml < RAGTUNE_* environment < CLI flags.

``ragtune.toml`` is read from the working folder, then from the knowledge-base folder
(the kb's file wins, so a kb carries its own settings). Environment variables name a
field as ``RAGTUNE_<SECTION>__<FIELD>``, e.g. ``RAGTUNE_GENERATOR__MODEL=./my-model``.
CLI flags and Python callers pass dotted overrides: ``{"retrieval.k": 8}``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragtune.errors import ConfigError

CONFIG_FILE = "ragtune.toml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChunkingSettings(Section):
    chunk_tokens: int = 256  # counted with the embedder's tokenizer
    overlap_tokens: int = 32


class EmbedderSettings(Section):
    backend: Literal["sentence-transformers", "openai"] = "sentence-transformers"
    model: str = "all-MiniLM-L6-v2"  # packaged default, a sentence-transformers folder, or an endpoint's model name
    base_url: str | None = None  # for backend="openai"
    api_key_env: str = "OPENAI_API_KEY"
    batch_size: int = 64
    device: str = "cpu"


class StoreSettings(Section):
    backend: Literal["lancedb", "postgres"] = "lancedb"  # a postgresql:// --kb or store.url picks postgres
    url: str | None = None  # postgresql://user@host/db: the knowledge base lives in this database instead of the folder
    password_env: str = "PGPASSWORD"  # the server's password is read from this variable, never from the URL or a file
    ef_search: int = Field(100, ge=1)  # HNSW candidate list per query (raised to k when k is larger)
    lexical_scoring: Literal["bm25", "ts_rank_cd"] = "bm25"  # postgres: BM25 in SQL beat ts_rank_cd on squad-mini


class RetrievalSettings(Section):
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    k: int = 5
    candidates: int = 50  # per retriever, before fusion
    fusion: Literal["convex", "rrf"] = "convex"  # convex: min-max-normalised cosine and BM25, mixed by dense_weight
    dense_weight: float = 0.4  # share of the dense signal in the fused score (0 = BM25 only, 1 = dense only)
    rerank: bool = False
    reranker_model: str | None = None  # a local cross-encoder folder


class GeneratorSettings(Section):
    backend: Literal["transformers", "openai"] = "transformers"
    model: str = "smollm2"  # packaged alias (smollm2, gemma3-270m), a local HF folder, a .gguf file, or an endpoint's model name
    base_url: str | None = None  # for backend="openai", e.g. http://localhost:11434/v1
    api_key_env: str = "OPENAI_API_KEY"
    max_new_tokens: int = 256
    temperature: float = 0.0
    device: str = "auto"
    dtype: str = "auto"
    concurrency: int = Field(1, ge=1)  # requests in flight at once to an OpenAI-compatible endpoint (eval, synth)
    retries: int = Field(4, ge=0)  # retries of a request answered 429 or 5xx, with exponential backoff
    optimize: Literal["none", "int8"] = "none"  # CPU speed-up for transformers models; see docs/models.md
    static_cache: bool = True  # pre-allocated KV cache: faster decoding on CPU, same greedy text


class RagSettings(Section):
    min_relevance: float = 0.25  # below this best dense similarity the answer abstains instead of guessing
    max_context_tokens: int = 1536
    # keep only this many sentences of the retrieved passages, the most relevant to the question (0 = whole
    # passages); 3 lifts a small reader on dense prose (SQuAD), measured in docs/rag.md
    context_sentences: int = Field(0, ge=0)


class FinetuneSettings(Section):
    method: Literal["lora", "full"] = "lora"
    epochs: float = 3.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    gradient_accumulation: int = 1
    max_seq_tokens: int = 256
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    validation_fraction: float = 0.1
    eval_every: int = 20  # optimizer steps between validation-loss evaluations
    save_every: int = 20  # optimizer steps between resumable checkpoints
    patience: int = 3  # evaluations without improvement before early stopping (0 = never stop early)
    seed: int = 0
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs when smaller)
    warmup_fraction: float = 0.05  # linear warm-up share of the steps, then linear decay
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    min_delta: float = 0.0  # a validation loss must beat the best by more than this to count as better
    lora_target_modules: list[str] | None = None  # None: chosen per architecture
    keep_checkpoints: int = 2  # newest resumable checkpoints kept on disk
    merge: bool = False  # also write merged/ (a plain HF folder) after LoRA training
    loss_on: Literal["answer", "all"] = "answer"  # "answer": prompt tokens do not count toward the loss
    eval_max_examples: int = 256  # cap on validation (and train-loss probe) examples per evaluation
    overfit_ratio: float = 1.25  # warn when validation loss ends this many times above its best, or the gap is this wide


class ServeSettings(Section):
    host: str = "127.0.0.1"
    port: int = 8000
    api_key_env: str = "RAGTUNE_API_KEY"  # when set (or when binding beyond loopback) a bearer token is required
    cors_origins: list[str] = []  # empty: no cross-origin access (the page is served from the same origin)
    max_upload_mb: int = 50  # per uploaded file
    max_request_mb: float = 1.0  # any other request body (chat, search, embeddings)
    upload_types: list[str] = [".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"]
    rate_limit_per_minute: int = 120  # POST/DELETE per API key (or client address); GET reads free; 0 = off
    max_concurrent_generations: int = 1  # per model; further requests wait their turn without blocking the server
    shutdown_timeout_s: float = 120.0  # how long shutdown waits for queued ingestion to finish
    finetuned: str | None = None  # a fine-tuned model folder or adapter, served as "finetuned" / "finetuned+rag"
    report_dir: str = "report"  # where `ragtune eval` writes; the page links the newest index.html in it


class Settings(Section):
    chunking: ChunkingSettings = ChunkingSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    store: StoreSettings = StoreSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    generator: GeneratorSettings = GeneratorSettings()
    rag: RagSettings = RagSettings()
    finetune: FinetuneSettings = FinetuneSettings()
    serve: ServeSettings = ServeSettings()


def load_settings(kb_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  cwd: str | Path | None = None) -> Settings:
    """The effective settings for a knowledge base (or none), with overrides applied last."""
    merged: dict[str, Any] = {}
    folders = [Path(cwd or Path.cwd())] + ([Path(kb_dir)] if kb_dir and "://" not in str(kb_dir) else [])
    for folder in dict.fromkeys(p.resolve() for p in folders):
        path = folder / CONFIG_FILE
        if path.is_file():
            try:
                _deep_merge(merged, tomllib.loads(path.read_text(encoding="utf-8")))
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(f"{path}: not valid TOML ({e}); fix the file or remove it") from None
    for key, value in os.environ.items():
        if key.startswith("RAGTUNE_") and "__" in key:
            _set_dotted(merged, key[len("RAGTUNE_"):].lower().replace("__", "."), value)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(merged, key, value)
    try:
        return Settings.model_validate(merged)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"setting '{field}': {err['msg']} (check ragtune.toml, RAGTUNE_* variables and flags)") from None


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["retrieval.k=8", ...]`` → ``{"retrieval.k": "8"}`` (pydantic converts the types)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"'{pair}': expected KEY=VALUE, e.g. retrieval.k=8")
        out[key.strip()] = value.strip()
    return out


def _deep_merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _set_dotted(into: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        into = into.setdefault(part, {})
        if not isinstance(into, dict):
            raise ConfigError(f"setting '{dotted}': '{part}' is not a section")
    into[last] = value
