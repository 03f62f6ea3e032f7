"""`ragtune data check`: everything wrong or risky in a fine-tuning dataset, before any training.

Errors (exit non-zero): unreadable rows, missing fields, empty prompts or answers.
Warnings: over-long examples (tokens, for the chosen model), exact and near duplicates, train/validation
leakage, a dominant answer, and a size verdict. Every bad row is listed with its line; none is dropped.

Near duplicates: Jaccard similarity of character 5-gram sets ≥ ``near_threshold`` (0.85), found with
MinHash signatures (64 hashes) banded 16 × 4 so only candidate pairs are compared exactly.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.finetune.data import read_rows
from ragtune.types import Example

SIZE_LITTLE, SIZE_MODEST = 100, 1000
_HASHES, _BANDS = 64, 16
_MERSENNE = (1 << 61) - 1


@dataclass
class Finding:
    kind: str  # schema | empty | too_long | duplicate | near_duplicate | leakage | answers | size | truncated
    severity: str  # error | warning | info
    message: str
    where: list[str] = field(default_factory=list)  # "file:line" of every row concerned


@dataclass
class CheckReport:
    dataset: str
    examples: int
    validation_examples: int
    findings: list[Finding]
    stats: dict[str, Any]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "ok": self.ok, "examples": self.examples,
                "validation_examples": self.validation_examples, "errors": len(self.errors),
                "warnings": sum(f.severity == "warning" for f in self.findings),
                "findings": [asdict(f) for f in self.findings], "stats": self.stats}


def normalise(text: str) -> str:
    """Lower-case, punctuation removed, white space collapsed: the key for 'exact' duplicates."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def _shingles(text: str, n: int = 5) -> set[str]:
    t = normalise(text)
    return {t[i:i + n] for i in range(max(1, len(t) - n + 1))}


def _minhash(shingles: set[str], seeds: np.ndarray) -> np.ndarray:
    base = np.array([int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") >> 4
                     for s in shingles], dtype=np.uint64)
    a, b = seeds[:, :1], seeds[:, 1:]
    return ((a * base[None, :] + b) % np.uint64(_MERSENNE)).min(axis=1)


def near_duplicate_pairs(texts: list[str], threshold: float = 0.85) -> list[tuple[int, int, float]]:
    """Index pairs whose texts have char-5-gram Jaccard ≥ threshold (MinHash LSH, then exact Jaccard)."""
    rng = np.random.default_rng(0)
    seeds = rng.integers(1, 1 << 30, size=(_HASHES, 2), dtype=np.uint64)
    sh = [_shingles(t) for t in texts]
    rows = _HASHES // _BANDS
    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(sh):
        sig = _minhash(s, seeds)
        for band in range(_BANDS):
            buckets[(band, sig[band * rows:(band + 1) * rows].tobytes())].append(i)
    pairs: dict[tuple[int, int], float] = {}
    for members in buckets.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                i, j = members[x], members[y]
                if (i, j) not in pairs:
                    pairs[(i, j)] = len(sh[i] & sh[j]) / max(1, len(sh[i] | sh[j]))
    return sorted((i, j, sim) for (i, j), sim in pairs.items() if sim >= threshold)


def _key(e: Example) -> str:
    return normalise(e.prompt + "\n" + e.answer)


def check_examples(examples: list[Example], validation: list[Example] | None = None, tokenizer=None,
                   max_tokens: int = 256, near_threshold: float = 0.85) -> tuple[list[Finding], dict[str, Any]]:
    """Findings and statistics for already-parsed examples (schema problems are found by the reader)."""
    findings: list[Finding] = []
    validation = validation or []
    raw = bool(examples) and examples[0].text is not None
    empty = [e.where() for e in examples + validation if not e.answer.strip() or (not raw and not e.prompt.strip())]
    if empty:
        findings.append(Finding("empty", "error", f"{len(empty)} examples have an empty prompt or answer", empty))
    stats: dict[str, Any] = {"format": "raw text" if raw else "chat"}
    if tokenizer is not None and not raw and examples + validation:
        from ragtune.finetune.encode import chat_length
        from ragtune.models.loading import ensure_chat_template

        ensure_chat_template(tokenizer)
        lengths = [(e, chat_length(tokenizer, e.messages)) for e in examples + validation]
        long = [e.where() for e, n in lengths if n > max_tokens]
        counts = [n for _, n in lengths]
        stats["tokens"] = {"mean": round(statistics.mean(counts), 1), "max": max(counts),
                           "p95": int(np.percentile(counts, 95)), "limit": max_tokens}
        if long:
            findings.append(Finding("too_long", "warning", f"{len(long)} examples exceed {max_tokens} tokens and "
                                    "would be cut (raise --max-seq-tokens or shorten them)", long))
    for name, rows in (("train", examples), ("validation", validation)):
        groups: dict[str, list[str]] = defaultdict(list)
        for e in rows:
            groups[_key(e)].append(e.where())
        dups = [w for w in groups.values() if len(w) > 1]
        if dups:
            findings.append(Finding("duplicate", "warning", f"{sum(len(w) - 1 for w in dups)} exact duplicates in "
                                    f"{name} ({len(dups)} groups; normalised text)", [" = ".join(w) for w in dups]))
    keys = [_key(e) for e in examples]
    near = [(i, j, s) for i, j, s in near_duplicate_pairs(keys, near_threshold) if keys[i] != keys[j]]
    if near:
        findings.append(Finding("near_duplicate", "warning", f"{len(near)} near-duplicate pairs in train "
                                f"(character 5-gram Jaccard ≥ {near_threshold})",
                                [f"{examples[i].where()} ~ {examples[j].where()} ({s:.2f})" for i, j, s in near]))
    if validation:
        findings += _leakage(examples, validation, near_threshold)
    findings += _answers(examples, raw, stats)
    findings.append(_size_verdict(len(examples), raw))
    return findings, stats


def _leakage(train: list[Example], val: list[Example], threshold: float) -> list[Finding]:
    """Validation examples whose prompt (or text) also appears, exactly or nearly, in train."""
    def text(e: Example) -> str:
        return normalise(e.prompt or e.answer)
    train_keys = {text(e): e.where() for e in train}
    exact = [f"{e.where()} = {train_keys[text(e)]}" for e in val if text(e) in train_keys]
    joined = [text(e) for e in train] + [text(e) for e in val]
    n = len(train)
    near = [f"{val[j - n].where()} ~ {train[i].where()} ({s:.2f})"
            for i, j, s in near_duplicate_pairs(joined, threshold) if i < n <= j and joined[i] != joined[j]]
    out = []
    if exact or near:
        out.append(Finding("leakage", "warning", f"{len(exact)} validation prompts also in train, {len(near)} "
                           "nearly; validation loss will look better than it is", exact + near))
    return out


def _answers(examples: list[Example], raw: bool, stats: dict[str, Any]) -> list[Finding]:
    if raw or not examples:
        return []
    counts = Counter(e.answer.strip() for e in examples)
    top = counts.most_common(10)
    stats["answers"] = {"distinct": len(counts), "top": [{"answer": a[:80], "count": c} for a, c in top],
                        "mean_chars": round(statistics.mean(len(e.answer) for e in examples), 1)}
    share = top[0][1] / len(examples)
    if len(examples) >= 10 and share >= 0.5:
        return [Finding("answers", "warning", f"one answer is {share:.0%} of all examples ('{top[0][0][:60]}'); "
                        "the model may learn to always say it")]
    return [Finding("answers", "info", f"{len(counts)} distinct answers; most common is {share:.0%} of examples")]


def _size_verdict(n: int, raw: bool) -> Finding:
    unit = "documents" if raw else "examples"
    if n == 0:
        return Finding("size", "error", "no usable examples; expected messages, prompt/completion or "
                       "question/answer rows (or .txt/.md documents)")
    if n < SIZE_LITTLE:
        return Finding("size", "warning", f"{n} {unit} is little for this task; consider RAG or `ragtune synth` "
                       "to generate more")
    if n < SIZE_MODEST:
        return Finding("size", "info", f"{n} {unit}: enough for LoRA on a narrow task; watch the validation loss")
    return Finding("size", "info", f"{n} {unit}: a comfortable size for LoRA fine-tuning")


def check_dataset(path: str | Path, validation: str | Path | None = None, tokenizer=None,
                  max_tokens: int = 256) -> CheckReport:
    """Read a dataset (and optional validation file) and report every problem with its line number."""
    examples, problems = read_rows(path)
    val, val_problems = read_rows(validation) if validation else ([], [])
    findings = [Finding("schema", "error", f"{p.field}: {p.message}", [f"{p.source}:{p.line}"])
                for p in problems + val_problems]
    kinds = {e.text is None for e in examples + val}
    if len(kinds) > 1:
        findings.append(Finding("schema", "error", "mixes raw documents with instruction rows; use one kind"))
    more, stats = check_examples(examples, val, tokenizer, max_tokens)
    stats["rows_with_errors"] = len(problems) + len(val_problems)
    return CheckReport(str(path), len(examples), len(val), findings + more, stats)
