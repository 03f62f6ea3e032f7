"""`ragtune choose --plan`: every check, and what a run would do and take, with nothing heavy run.

The QA set, ``--train`` and the settings are checked as a real run checks them (`Choice.__init__`, before DOCS
is indexed); the split is computed; DOCS is only walked (files and bytes counted, chunks estimated from bytes at
about 4 characters a token), never read or embedded. Which stages a run would redo or reuse comes from the
input fingerprints (`choose_inputs`).

``estimated_seconds`` is an estimate, from a short measurement of this machine: the embedder on a few texts
of the corpus's mean chunk length (seconds per chunk), the generator answering once closed-book (seconds per
answer, its decoding scaled to the answer cap the tune stage will set) and prefilling a RAG-sized prompt (k
such chunks; a RAG answer is the closed-book one plus that prefill), and one training pass
(`finetune.estimate.example_seconds`, the trainer's own step) of the team's median training row (a question
about the longest sentence the synthesiser takes when the rows are synthesised later) and of a RAG-sized RAFT
prompt. Each stage scales these by its counts. Model loading, early stopping and I/O are not counted, and a busy
machine runs slower: read the figures as an order of magnitude.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragtune.choose.inputs import files_manifest, stale
from ragtune.choose.train import budget, cap_note
from ragtune.finetune.estimate import example_seconds, generation_seconds, median_example, training_seconds
from ragtune.finetune.synth import MAX_SENTENCE_WORDS

if TYPE_CHECKING:
    from ragtune.choose.recipe import Choice

CHARS_PER_TOKEN = 4
SAMPLE_TEXTS = 8


def plan(choice: Choice, given: list[str | Path]) -> dict[str, Any]:
    """The plan of ``choice`` on DOCS (``given``), as `choose --plan --json` prints it."""
    docs = [Path(d) for d in given]
    from ragtune.choose.answers import answer_cap
    from ragtune.choose.parts import split_questions
    from ragtune.choose.recipe import REBUILT, STAGES, _given, _is_qa_folder
    from ragtune.evaluate.qa import load_qa

    s = choice.settings
    for doc in docs:
        if not doc.exists():
            from ragtune.errors import InputError

            raise InputError(f"{doc}: not found; DOCS are files or folders of documents, or a QA folder")
    parts = split_questions(choice.qa, s, train_given=choice.train_path is not None)
    files = list(files_manifest(docs))
    size = sum(f[1] for f in files)
    per_chunk = max(s.chunking.chunk_tokens - s.chunking.overlap_tokens, 1) * CHARS_PER_TOKEN
    qa_folders = [d for d in docs if d.is_dir() and _is_qa_folder(d)]  # their documents are records: count them
    records = [len(doc.text) for d in qa_folders for doc in load_qa(d).documents]
    plain = [f[1] for f in files_manifest([d for d in docs if d not in qa_folders])]
    chunks = sum(math.ceil(n / per_chunk) for n in records + plain)
    # a chunk's mean length: short records and files make short chunks, and shorter RAG and RAFT prompts
    passage = min(per_chunk, max(1, sum(records + plain) // max(chunks, 1)))
    if choice.train_examples is not None:
        origin, available = str(choice.train_path), len(choice.train_examples)
    elif parts.train:
        origin, available = "qa train split", len(parts.train)
    else:
        origin, available = "synthetic (extractive, from DOCS), estimated", chunks * s.choose.synth_per_chunk
    cap, setting = budget(s.choose, choice.synthetic_training(parts))
    used = available if cap <= 0 else min(cap, available)
    changed, redo = stale(choice.state.get("inputs", {}), choice.inputs(docs), choice.state,
                          choice._training_from())
    reuse = [st for st in STAGES if st in choice.state and st not in redo and st not in REBUILT and not choice.fresh]
    cap = (s.generator.max_new_tokens if _given(choice.overrides, "generator.max_new_tokens")
           else answer_cap(parts.dev + parts.test))  # as the tune stage sets it
    speed = measure(choice, _median_row(choice, parts), passage, cap)
    seconds = estimate(s, speed, chunks, len(parts.dev), len(parts.test), used)
    whole = estimate(s, speed, chunks, len(parts.dev), len(parts.test), available) if used < available else None
    note = cap_note(used, available, whole["finetune"] + whole["raft"] if whole else None, setting)
    return {
        "questions": len(choice.qa.items), "dev": len(parts.dev), "test": len(parts.test),
        "skipped": [{"line": b.get("line"), "reason": b.get("reason")} for b in choice.qa.skipped],
        "metric": {"name": choice.qa.metric, "reason": choice.qa.metric_reason},
        "train_examples": {"origin": origin, "used": used, "available": available,
                           **({"note": note} if note else {})},
        "docs": {"files": len(files), "bytes": size, "chunks_estimated": chunks, "chunk_chars_estimated": passage},
        "changed": changed, "stages": {st: "reuse" if st in reuse else "run" for st in STAGES},
        "estimated_seconds": {st: round(v, 1) for st, v in seconds.items()
                              if st not in reuse},
        "measured": {k: round(v, 4) for k, v in speed.items()},
    }


def measure(choice: Choice, row: list[dict[str, str]] | None = None, passage_chars: int | None = None,
            answer_tokens: int | None = None) -> dict[str, float]:
    """Seconds per embedded chunk, per closed-book and per RAG answer of ``answer_tokens`` (None:
    ``generator.max_new_tokens``), and per training pass of ``row`` (a training example's messages; None: a
    synthesised row's longest question) and of a RAG-sized RAFT prompt (``retrieval.k`` passages of
    ``passage_chars``, the corpus's mean chunk; None: a whole chunk)."""
    from ragtune.index.embedders import make_embedder
    from ragtune.models.backends import load_generator

    s = choice.settings
    chunk = ("word " * s.chunking.chunk_tokens)[: passage_chars or s.chunking.chunk_tokens * CHARS_PER_TOKEN]
    embed = make_embedder(s.embedder)
    embed([chunk])  # the first call warms up
    t = time.perf_counter()
    embed([chunk] * SAMPLE_TEXTS)
    per_chunk = (time.perf_counter() - t) / SAMPLE_TEXTS
    gen = load_generator(s.generator.model_copy(update={"model": choice.model}))
    question = [{"role": "user", "content": "What is the capital of the land described?"}]
    rag = [{"role": "system", "content": " ".join([chunk] * s.retrieval.k)}] + question
    gen(question, max_new_tokens=1)  # warm-up
    tokens = answer_tokens or s.generator.max_new_tokens
    started = time.perf_counter()
    reply = gen(question, max_new_tokens=tokens)
    # the filler question stops after a few tokens: decoding is scaled to the answers' cap (the high side)
    closed = (time.perf_counter() - started) * max(1.0, tokens / max(gen.count_tokens(reply), 1))
    prefill = generation_seconds(gen, rag, 1)
    del gen
    answer = [{"role": "assistant", "content": "The capital is Arlen."}]
    # rows synthesised later ask about one sentence each: the longest the synthesiser takes stands in for them
    seq = "Fill in the blank: " + "word " * min(MAX_SENTENCE_WORDS, s.finetune.max_seq_tokens)
    room = s.finetune.model_copy(update={"max_seq_tokens": max(s.finetune.max_seq_tokens,
                                                               (s.retrieval.k + 1) * s.chunking.chunk_tokens)})
    train, raft = example_seconds(choice.model, room, [row or [{"role": "user", "content": seq}] + answer,
                                                       rag + answer])
    return {"embed_per_chunk": per_chunk, "answer_closed": closed, "answer_rag": closed + prefill,
            "train_pass": train, "train_pass_rag": raft}


def _median_row(choice: Choice, parts: Any) -> list[dict[str, str]] | None:
    """The messages of the team's training row of median length (None when the rows will be synthesised)."""
    from ragtune.choose.parts import examples_from

    rows = (choice.train_examples if choice.train_examples is not None
            else examples_from(parts.train, choice.qa.system, "qa train split") if parts.train else [])
    return median_example(rows) if rows else None


def estimate(s: Any, speed: dict[str, float], chunks: int, dev: int, test: int, examples: int) -> dict[str, float]:
    """Seconds per stage from the measured speeds and the counts (see the module's note)."""
    from ragtune.finetune.raft import epochs

    templates = [t for t in dict.fromkeys(s.choose.templates) if t != s.rag.template]  # each tried once
    trials = len(s.choose.k) * len(s.choose.context_sentences) + (1 if s.rag.min_relevance > 0 else 0) + len(templates)
    train_n = max(examples - int(examples * s.finetune.validation_fraction), 1)
    raft = s.finetune.model_copy(update={"epochs": epochs(s)})
    return {"index": chunks * speed["embed_per_chunk"], "check": 0.0, "split": 0.0,
            "train_data": chunks * 0.001, "tune": trials * dev * speed["answer_rag"],
            "finetune": training_seconds(train_n, s.finetune, speed["train_pass"], examples - train_n),
            "raft": training_seconds(train_n, raft, speed["train_pass_rag"], examples - train_n),
            "evaluate": test * (2 * speed["answer_closed"] + 3 * speed["answer_rag"])}


def show(planned: dict[str, Any], as_json: bool) -> str:
    """The plan as JSON, or as a few lines for a person."""
    if as_json:
        import json

        return json.dumps(planned, indent=2)
    data, metric, seconds = planned["train_examples"], planned["metric"], planned["estimated_seconds"]
    lines = [f"questions: {planned['questions']} ({planned['dev']} dev, {planned['test']} test), "
             f"{len(planned['skipped'])} lines skipped",
             f"metric: {metric['name']} ({metric['reason']})",
             f"training data: {data['origin']}, {data['used']} of {data['available']} rows",
             f"DOCS: {planned['docs']['files']} files, {planned['docs']['bytes']} bytes, about "
             f"{planned['docs']['chunks_estimated']} chunks"]
    lines += [f"  {data['note']}"] if "note" in data else []
    lines += [f"changed since the last run: {', '.join(planned['changed'])}"] if planned["changed"] else []
    lines += [f"  {stage}: {what}" + (f", about {seconds[stage]:.0f} s" if stage in seconds else "")
              for stage, what in planned["stages"].items()]
    lines.append(f"estimated total: about {sum(seconds.values()) / 60:.0f} min (an estimate from a short "
                 "measurement of this machine)")
    return "\n".join(lines)
