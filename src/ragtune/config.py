"""One typed Settings model: defaults < ragtune.toml < RAGTUNE_* environment < CLI flags.

``ragtune.toml`` is read from the working folder, then from the knowledge-base folder
(the kb's file wins, so a kb carries its own settings). Environment variables name a
field as ``RAGTUNE_<SECTION>__<FIELD>``, e.g. ``RAGTUNE_GENERATOR__MODEL=./my-model``.
CLI flags and Python callers pass dotted overrides: ``{"retrieval.k": 8}``.
"""

from __future__ import annotations

import json
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
    chunk_tokens: int = 256  # counted with the embedder's tokenizer (an endpoint's: with all-MiniLM-L6-v2's)
    overlap_tokens: int = 32


class EmbedderSettings(Section):
    backend: Literal["sentence-transformers", "openai"] = "sentence-transformers"
    model: str = "all-MiniLM-L6-v2"  # packaged default, a sentence-transformers folder, or an endpoint's model name
    base_url: str | None = None  # for backend="openai"
    api_key_env: str = "OPENAI_API_KEY"
    # texts per forward pass (or per endpoint request); with MiniLM on CPU 32 beat 64 by 1.2x in bf16 (tighter
    # padding of the length-sorted batches, BENCHMARKS.md 2026-12-04)
    batch_size: int = Field(32, ge=1)
    device: str = "cpu"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 weights where the hardware has bf16


class StoreSettings(Section):
    backend: Literal["lancedb", "postgres"] = "lancedb"  # a postgresql:// --kb or store.url picks postgres
    url: str | None = None  # postgresql://user@host/db: the knowledge base lives in this database instead of the folder
    password_env: str = "PGPASSWORD"  # the server's password is read from this variable, never from the URL or a file
    ef_search: int = Field(100, ge=1)  # HNSW candidate list per query (raised to k when k is larger)
    lexical_scoring: Literal["bm25", "ts_rank_cd"] = "bm25"  # postgres: BM25 in SQL beat ts_rank_cd on squad-mini


class RetrievalSettings(Section):
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    k: int = Field(3, ge=1)  # 3 beat 5 with the 135M reader on squad-mini tuning questions (BENCHMARKS.md, "Defaults")
    candidates: int = Field(50, ge=1)  # per retriever, before fusion
    fusion: Literal["convex", "rrf"] = "convex"  # convex: min-max-normalised cosine and BM25, mixed by dense_weight
    dense_weight: float = Field(0.4, ge=0, le=1)  # share of the dense signal in the fused score (0 = BM25 only, 1 = dense only)
    rerank: bool = False
    reranker_model: str | None = None  # a local cross-encoder folder


class GeneratorSettings(Section):
    # auto: the compiled engine (onnxruntime-genai) on CPU, transformers on a GPU or when the engine is missing
    backend: Literal["auto", "onnxruntime-genai", "transformers", "openai"] = "auto"
    model: str = "smollm2"  # packaged alias (smollm2, gemma3-270m), a local HF folder, a .gguf file, or an endpoint's model name
    base_url: str | None = None  # for backend="openai", e.g. http://localhost:11434/v1
    api_key_env: str = "OPENAI_API_KEY"
    max_new_tokens: int = 64  # answers are short; a longer cap mostly bought rambling (`choose` tunes it per task)
    temperature: float = 0.0
    device: str = "auto"
    dtype: str = "auto"
    concurrency: int = Field(1, ge=1)  # requests in flight at once to an OpenAI-compatible endpoint (eval, synth)
    retries: int = Field(4, ge=0)  # retries of a request answered 429 or 5xx, with exponential backoff
    optimize: Literal["none", "int8"] = "none"  # CPU speed-up for transformers models; see docs/models.md
    static_cache: bool = True  # pre-allocated KV cache: faster decoding on CPU, same greedy text
    # weights of the compiled engine: fp32 gave the transformers reference's answers on every measured question;
    # int8 decodes ~1.6x faster but lost 0.02 F1 (paired) on squad-mini, int4 lost the answers (BENCHMARKS.md)
    precision: Literal["fp32", "int8", "int4"] = "fp32"
    # stop a local model's reply when a run of this many new tokens repeats (0 = never); cut before the repeat.
    # 6 halved the reply tokens and the latency of squad-mini RAG answers at equal or better F1 (BENCHMARKS.md)
    repeat_ngram: int = Field(6, ge=0)
    stop: list[str] = []  # texts that end a reply (not included), as in the OpenAI API


class RagSettings(Section):
    min_relevance: float = 0.25  # below this best dense similarity the answer abstains instead of guessing
    max_context_tokens: int = 1536
    # keep only this many sentences of the retrieved passages, the most relevant to the question (0 = whole
    # passages); 3 lifts a small reader on dense prose (SQuAD), measured in docs/rag.md
    context_sentences: int = Field(3, ge=0)
    # the prompt's layout, one of models/prompts.py's TEMPLATES (the same names); chosen by bench/reader.py
    template: Literal["fenced", "unfenced", "plain", "sandwich"] = "fenced"


# Adam moves every trainable weight by about the learning rate per step; these models' weights are
# ~0.02-0.1 in size, so above 0.1 a few steps overwrite what the model knew (usual: 1e-5 full, 1e-4-1e-3 LoRA).
MAX_LEARNING_RATE = 0.1


class FinetuneSettings(Section):
    # Bounds are checked here, once, for ragtune.toml, RAGTUNE_FINETUNE__* and flags alike.
    method: Literal["lora", "full"] = "lora"
    epochs: float = Field(3.0, gt=0)
    learning_rate: float | None = Field(None, gt=0, le=MAX_LEARNING_RATE)  # None: 1e-3 LoRA, 5e-5 full
    batch_size: int = Field(8, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    # activation memory one forward/backward may hold, in MiB: a micro-batch that would hold more runs in pieces
    # (the same gradient), an example too long alone with activation checkpointing. None: a quarter of the
    # available memory, at most 512 MiB (LoRA on SmolLM2 then stays under 2 GiB resident); 0: no limit
    activation_memory_mb: int | None = Field(None, ge=0)
    max_seq_tokens: int = Field(256, ge=8)
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    # 0, as in peft, torchtune and Unsloth: the dropout masks were a quarter of a LoRA step's time on CPU;
    # without them 1.4x the tokens/s at the same validation loss (BENCHMARKS.md, 2026-12-04)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    eval_every: int | None = Field(None, ge=1)  # steps between validation evaluations (None: 10 per run)
    save_every: int = Field(20, ge=1)  # optimizer steps between resumable checkpoints
    patience: int = Field(3, ge=0)  # evaluations without improvement before early stopping (0 = never stop early)
    seed: int = 0
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (overrides epochs when smaller)
    min_steps: int = Field(30, ge=0)  # at least this many optimizer steps, however small the data (max_steps wins)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)  # linear warm-up share of the steps, then linear decay
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    min_delta: float = Field(0.0, ge=0)  # a validation loss must beat the best by more than this to count as better
    lora_target_modules: list[str] | None = None  # None: chosen per architecture
    keep_checkpoints: int = Field(2, ge=1)  # newest resumable checkpoints kept on disk
    merge: bool = False  # also write merged/ (a plain HF folder) after LoRA training
    loss_on: Literal["answer", "all"] = "answer"  # "answer": prompt tokens do not count toward the loss
    eval_max_examples: int = Field(256, ge=1)  # cap on validation examples per evaluation
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast where the hardware has bf16
    # warn when validation loss ends this many times above its best, or the gap is this wide
    overfit_ratio: float = Field(1.25, ge=1)


class RaftSettings(Section):
    """RAFT (`ragtune finetune --raft`): train on the RAG prompt, the gold passage among hard distractors."""

    # retrieved passages that do not hold the answer, per training prompt; None: retrieval.k - 1, so a training
    # prompt holds as many passages as an answer's (and context compression keeps the gold as often)
    distractors: int | None = Field(None, ge=0)
    # share of prompts with the gold passage (RAFT's P); None: how often the retriever itself brings the answer
    # into the top retrieval.k for the training questions, within [0.5, 0.9] (the mix the model will be shown)
    gold_share: float | None = Field(None, ge=0.0, le=1.0)
    reasoning: bool = False  # the target quotes the supporting sentence before the answer
    # what a prompt without the gold passage is trained to say: the answer (RAFT's setting: answer from what the
    # model learned) or the abstention text (answer only from the passages)
    absent: Literal["answer", "abstain"] = "answer"
    candidates: int = Field(20, ge=1)  # passages retrieved per question to find the gold one and the distractors
    # passes over the RAFT data (None: finetune.epochs). Three RAFT runs of 3 epochs reached their best validation
    # loss at 1.9-2.2 epochs and spent the rest waiting out early stopping; 2 epochs scored as well (BENCHMARKS.md)
    epochs: float | None = Field(2.0, gt=0)
    # `ragtune finetune --kb KB --raft` with no dataset: pairs synthesised from the knowledge base's own chunks
    kb_per_chunk: int = Field(4, ge=1)  # sentences per chunk made into pairs (one of each of kb_kinds)
    # the pairs made (synth.KINDS): wh-questions and fact questions read best on the reader benchmark's held-out
    # kbs (gold fact 26/41, F1 0.56, right source 66%; cloze + fact 25/41, 0.42, 49%, in one run; BENCHMARKS.md
    # "Reader: RAFT from a knowledge base, synthesis fixed, wh-questions")
    kb_kinds: list[Literal["cloze", "fact", "wh"]] = ["wh", "fact"]
    kb_heldout: int = Field(10, ge=0)  # held-out questions, each from a chunk no training pair comes from
    kb_max_examples: int = Field(64, ge=1)  # training pairs at most (a seeded sample)
    # optimizer steps (finetune.max_steps unless --max-steps): 12 steps of 8 prompts of ~230 tokens are 22k tokens,
    # about 2 min at the ~190 training tokens/s BENCHMARKS.md records for this 2-core machine when quiet (a budget
    # from that figure; under a load of 10 training ran >10x slower)
    kb_max_steps: int = Field(12, ge=1)


class ChooseSettings(Section):
    """`ragtune choose`: how the questions are split and which settings are tuned on the dev part."""

    dev_fraction: float = Field(0.15, gt=0.0, lt=0.5)  # share of the questions used to tune settings, never scored
    dev_min: int = Field(8, ge=1)
    dev_max: int = Field(16, ge=1)  # tuning asks every dev question once per candidate: keep it small
    test_max: int = Field(100, ge=1)  # the verdict's questions (a seeded sample of the rest); raise for tighter CIs
    k: list[int] = [3, 5]  # retrieval.k candidates
    context_sentences: list[int] = [0, 3]  # rag.context_sentences candidates (0 = whole passages)
    # rag.template candidates, tried at the best k and compression (the configured template wins a tie); only
    # templates whose injection resistance the reader benchmark measured (bench/reader.py), as tuning sees accuracy
    templates: list[Literal["fenced", "unfenced", "plain", "sandwich"]] = ["fenced", "sandwich"]
    synth_per_chunk: int = Field(2, ge=1)  # synthesised training pairs per chunk when no training set is given
    # synthetic test questions added, each from a chunk training synthesis never sees: None tops the test part
    # up to 30 when DOCS can yield more (all 30 with no QA file), 0 adds none
    synth_test: int | None = Field(None, ge=0)
    # what writes synthetic questions and training pairs: extractive (no model) or llm (the [generator] model
    # or endpoint, asked for JSON pairs grounded in each chunk)
    synth_generator: Literal["extractive", "llm"] = "extractive"
    # at most this many of the team's own training rows (--train, a QA set's train split), a seeded sample, for
    # the adapter and RAFT alike; 0 = every row. Measured (BENCHMARKS.md "Training rows"): a cap of 256 cost a
    # third of a narrow task's score (0.667 vs 1.000 on 885 rows) to save two thirds of the training time
    max_train_examples: int = Field(0, ge=0)
    # pairs synthesised from DOCS when no training set is given: a time budget (they restate the documents, and
    # squad-mini's paragraphs yield 1,014); --train-all lifts both caps
    max_synthetic_examples: int = Field(256, ge=0)
    # what RAFT trains from: the fine-tuned model (it keeps what that model recalls when retrieval misses the
    # answer) or the base model (RAFT as published)
    raft_from: Literal["finetuned", "base"] = "finetuned"
    seed: int = 0


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
    raft: RaftSettings = RaftSettings()
    choose: ChooseSettings = ChooseSettings()
    serve: ServeSettings = ServeSettings()


def load_settings(kb_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  cwd: str | Path | None = None) -> Settings:
    """The effective settings for a knowledge base (or none), with overrides applied last."""
    merged: dict[str, Any] = {}
    folders = [Path(cwd or Path.cwd())] + ([Path(kb_dir)] if kb_dir and "://" not in str(kb_dir) else [])
    for folder in dict.fromkeys(p.resolve() for p in folders):
        path = folder / CONFIG_FILE
        if path.is_file():
            _deep_merge(merged, _read_toml(path))
    for key, value in os.environ.items():
        if key.startswith("RAGTUNE_") and "__" in key:
            _set_dotted(merged, key[len("RAGTUNE_"):].lower().replace("__", "."), value)
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(merged, key, value)
    try:
        return Settings.model_validate(merged)
    except ValidationError as e:
        raise ConfigError(f"{describe_error(e)} (check ragtune.toml, RAGTUNE_* variables and flags)") from None


def describe_error(error: ValidationError, prefix: str = "") -> str:
    """``setting 'finetune.epochs' = -1: Input should be greater than 0`` for a settings validation error."""
    err = error.errors()[0]
    field = prefix + ".".join(str(p) for p in err["loc"])
    given = f" = {err['input']!r}" if err.get("type") != "missing" and not isinstance(err.get("input"), dict) else ""
    message = "unknown setting; `ragtune config` lists them all" if err["type"] == "extra_forbidden" else err["msg"]
    return f"setting '{field}'{given}: {message}"


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """``["retrieval.k=8", ...]`` → ``{"retrieval.k": "8"}`` (pydantic converts the types)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"'{pair}': expected KEY=VALUE, e.g. retrieval.k=8")
        out[key.strip()] = value.strip()
    return out


def to_toml(data: dict[str, Any]) -> str:
    """Settings as TOML (sections of scalars and lists; unset values shown as comments)."""
    lines: list[str] = []
    for section, fields in data.items():
        lines.append(f"[{section}]")
        for key, value in fields.items():
            lines.append(f"# {key} = (unset)" if value is None else f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


def save_overrides(path: Path, overrides: dict[str, Any]) -> None:
    """Merge dotted overrides into a ragtune.toml (typed, validated, atomic); other keys of the file stay."""
    from ragtune.atomic import atomic_write

    current = _read_toml(path) if path.exists() else {}
    for key, value in overrides.items():
        _set_dotted(current, key, value)
    try:  # store typed values: validate through Settings, then keep only the keys the file names
        typed = Settings.model_validate(current).model_dump(mode="json")
    except ValidationError as e:
        raise ConfigError(f"{path}: {e.errors()[0]['msg']} (at {'.'.join(map(str, e.errors()[0]['loc']))})") from None
    atomic_write(path, to_toml({s: {f: typed[s][f] for f in fs} for s, fs in current.items()}))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); TOML files are UTF-8, re-save it "
                          "as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the file or remove it") from None


def _deep_merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _typed(value: Any) -> Any:
    """A list or table given as text (an environment variable, a --set value) in JSON: '[3, 5]' -> [3, 5]."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"'{value}': looks like a list or table but is not valid JSON; write e.g. [3, 5]") from None
    return value


def _set_dotted(into: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        into = into.setdefault(part, {})
        if not isinstance(into, dict):
            raise ConfigError(f"setting '{dotted}': '{part}' is not a section")
    into[last] = _typed(value)
