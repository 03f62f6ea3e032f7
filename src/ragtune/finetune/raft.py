"""RAFT (Zhang et al. 2024): fine-tune on the RAG prompt itself — the gold passage among hard distractors.

For each question ragtune's own retriever supplies the distractors: the best-ranked passages that do not hold the
answer. With probability ``gold_share`` the gold passage joins them at a random position and the target cites it
as ``[n]``; otherwise the prompt holds distractors only and the target is still the gold answer (RAFT's setting
that teaches the model to fall back on what it knows; with ``absent = "abstain"`` the target is then the
abstention text, which teaches it to answer from the passages only). Unset, ``gold_share`` is measured: the share
of training questions whose answer the retriever itself brings into the top ``retrieval.k`` (`natural_share`),
so the model trains on the mix of prompts it will be shown. Prompts are built by `RAG.build`, the function that builds
them at answer time, so training and inference see the same bytes for the same passages.

    examples, stats = raft_examples(load_examples("qa.jsonl"), KnowledgeBase("kb"), settings)
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragtune.config import RaftSettings, Settings
from ragtune.errors import InputError
from ragtune.metrics import holds_gold, normalize
from ragtune.models.base import estimate_tokens
from ragtune.models.prompts import ABSTAIN_TEXT
from ragtune.rag import RAG, Retriever
from ragtune.types import Example, Hit

_SENTENCE = re.compile(r"(?<=[.!?])\s+")


@dataclass
class RaftStats:
    """What the data builder found; written beside the adapter and printed by the CLI."""

    examples: int = 0
    gold_found: int = 0  # examples with a gold passage (by their source, or a retrieved passage holding the answer)
    gold_by_source: int = 0
    gold_in_prompt: int = 0
    distractors: int = 0  # distractor passages over all prompts
    retrieved_gold: int = 0  # examples whose answer the retriever brings into the top retrieval.k by itself
    gold_share: float = 0.0  # the share used: raft.gold_share, or measured (`natural_share`)

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def holds_answer(text: str, answer: str) -> bool:
    """The passage contains the answer (normalised as SQuAD does, whole tokens)."""
    gold = normalize(answer)
    return bool(gold) and f" {gold} " in f" {normalize(text)} "


def question_of(example: Example) -> tuple[str, str | None]:
    """The example's question (its last user turn) and its task instruction (its system turn, if any)."""
    user = next((m["content"] for m in reversed(example.messages[:-1]) if m["role"] == "user"), "")
    system = next((m["content"] for m in example.messages if m["role"] == "system"), None)
    return user, system


def find_gold(example: Example, question: str, retriever: Retriever, candidates: int) -> tuple[Hit | None, list[Hit]]:
    """The gold passage (the example's source when given, else a retrieved passage holding the answer) and the
    ranked candidates it was looked for in."""
    hits = retriever.search(question, k=candidates)
    answer = example.answer
    if example.gold_source:
        same = [h for h in hits if h.source == example.gold_source]
        if not same:  # not among the candidates: the gold source's best passage for this question
            same = retriever.search(question, k=3, where={"source": example.gold_source})
        if same:
            return next((h for h in same if holds_answer(h.text, answer)), same[0]), hits
    return next((h for h in hits if holds_answer(h.text, answer)), None), hits


def raft_examples(examples: list[Example], retriever: Retriever, settings: Settings,
                  count_tokens: Callable[[str], int] | None = None, seed: int = 0
                  ) -> tuple[list[Example], RaftStats]:
    """RAFT training examples from question/answer examples; seeded, so a resumed run rebuilds the same data."""
    opts: RaftSettings = settings.raft
    n_distractors = distractor_count(settings)
    rng = random.Random(seed)
    found = []  # every example's gold passage and candidates first: the gold share may be measured on them
    for example in examples:
        question, instruction = question_of(example)
        gold, hits = find_gold(example, question, retriever,
                               max(opts.candidates, n_distractors + 1, settings.retrieval.k))
        found.append((example, question, instruction, gold, hits))
    reached = sum(retrieved(hits[:settings.retrieval.k], gold, example) for example, _, _, gold, hits in found)
    share = opts.gold_share if opts.gold_share is not None else natural_share(reached, len(found))
    stats = RaftStats(retrieved_gold=reached, gold_share=round(share, 4))
    out = []
    for example, question, instruction, gold, hits in found:
        gold_source = gold.source if gold else example.gold_source
        distractors = [h for h in hits if h.source != gold_source and not holds_answer(h.text, example.answer)]
        passages = distractors[:n_distractors]
        with_gold = gold is not None and rng.random() < share
        if gold is not None and with_gold:
            passages.insert(rng.randrange(len(passages) + 1), gold)
        # the trained model's tokenizer fits the passages as at answer time; never load a generator here
        rag = RAG(retriever, None, settings, instruction=instruction, count_tokens=count_tokens or estimate_tokens)
        prepared = rag.build(question, passages)
        n = next((i for i, h in enumerate(prepared.hits, 1) if with_gold and h.source == gold_source), None)
        target = _target(example.answer, prepared.hits[n - 1].text if n else None, n, opts)
        out.append(Example(messages=prepared.messages + [{"role": "assistant", "content": target}],
                           source=example.source, line=example.line, gold_source=gold_source))
        stats.examples += 1
        stats.gold_found += gold is not None
        stats.gold_by_source += gold is not None and gold.source == example.gold_source
        stats.gold_in_prompt += n is not None
        stats.distractors += len(prepared.hits) - (n is not None)
    return out, stats


def retrieved(hits: list[Hit], gold: Hit | None, example: Example) -> bool:
    """The retriever's own top passages hold the answer, as evaluation counts it (`holds_gold`: the gold
    passage's source, or a passage containing the answer)."""
    return gold is not None and any(holds_gold(h.source, h.text, [gold.source], [example.answer]) for h in hits)


def natural_share(reached: int, total: int, low: float = 0.5, high: float = 0.9) -> float:
    """The gold share when none is set: how often retrieval holds the answer at answer time (measured on the
    training questions), so training shows the model the mix of prompts it will see; at least ``low`` so it
    still learns to read and cite behind a weak retriever, at most ``high`` so it still learns to answer when
    retrieval misses (RAFT's ablation found no single best share across data sets)."""
    return min(max(reached / total if total else 0.0, low), high)


def distractor_count(settings: Settings) -> int:
    """``raft.distractors``, or when unset ``retrieval.k - 1``: the training prompt then holds as many passages
    as the prompt the model will answer. With more passages than that, context compression keeps the gold
    passage's sentences less often (on 80 tfhub-apibench prompts: 27 held it with 4 distractors, 50 with 2)."""
    return settings.raft.distractors if settings.raft.distractors is not None else max(settings.retrieval.k - 1, 0)


def epochs(settings: Settings) -> float:
    """The passes RAFT trains: ``raft.epochs``, or when unset ``finetune.epochs``."""
    return settings.raft.epochs if settings.raft.epochs is not None else settings.finetune.epochs


def seq_tokens(examples: list[Example], tokenizer: Any, floor: int) -> int:
    """The ``finetune.max_seq_tokens`` RAFT trains with: at least ``floor``, and enough for its longest example
    whole. RAFT prompts are answer-time prompts (up to ``rag.max_context_tokens``); cut to a plain fine-tune's
    limit they would lose their answer tokens and teach nothing."""
    from ragtune.finetune.encode import chat_length, ensure_chat_template

    ensure_chat_template(tokenizer)
    return max([floor] + [chat_length(tokenizer, e.messages) for e in examples])


def _target(answer: str, gold_text: str | None, n: int | None, opts: RaftSettings) -> str:
    """The answer, citing the gold passage when it is in the prompt; with ``reasoning`` the supporting sentence
    is quoted first (RAFT's chain-of-thought answers). Without the gold passage: the answer, or with ``absent =
    "abstain"`` the abstention text."""
    if n is None:
        return ABSTAIN_TEXT if opts.absent == "abstain" else answer
    if not opts.reasoning or gold_text is None:
        return f"{answer} [{n}]"
    sentences = [s for s in _SENTENCE.split(gold_text) if holds_answer(s, answer)]
    quote = sentences[0].strip() if sentences else ""
    return f'[{n}] says: "{quote}"\nAnswer: {answer} [{n}]' if quote else f"{answer} [{n}]"


def raft_dataset(dataset: str | Path, validation: str | Path | None, kb: str | Path | None, model: str,
                 settings: Settings, out: str | Path, fields: dict[str, str] | None = None
                 ) -> tuple[list[Example], list[Example] | None, int]:
    """`ragtune finetune --raft`: the RAFT examples of a dataset (and of its validation file) (`raft_prompts`).
    ``fields`` maps column names (`data.read_rows`)."""
    from ragtune.finetune.data import load_examples
    from ragtune.index.knowledge_base import KnowledgeBase

    retriever = KnowledgeBase(check_kb(kb), settings=settings)
    val = load_examples(validation, fields) if validation is not None else None
    return raft_prompts(load_examples(dataset, fields), val, retriever, model, settings, out, str(dataset))


def check_kb(kb: str | Path | None) -> Path:
    """The knowledge-base folder ``--raft`` reads its passages from; one line when there is none."""
    if kb is None or not Path(kb).is_dir():
        raise InputError(f"--raft needs --kb: a knowledge-base folder ({kb or 'none given'}); build one with "
                         "`ragtune ingest DOCS --kb DIR`")
    return Path(kb)


def raft_prompts(train: list[Example], validation: list[Example] | None, retriever: Any, model: str,
                 settings: Settings, out: str | Path, name: str, about: dict[str, Any] | None = None
                 ) -> tuple[list[Example], list[Example] | None, int]:
    """RAFT examples of ``train`` (and ``validation``), built with the knowledge base's retriever and counted with
    the model's tokenizer, and the ``max_seq_tokens`` that holds them whole (`seq_tokens`); ``out/raft.json``
    records what was found (and ``about`` the data: where it came from)."""
    from ragtune.atomic import atomic_write_json
    from ragtune.finetune.base import load_tokenizer

    tokenizer = load_tokenizer(model)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    prompts, stats = raft_examples(train, retriever, settings, count, seed=settings.finetune.seed)
    val = None
    if validation is not None:
        val, _ = raft_examples(validation, retriever, settings, count, seed=settings.finetune.seed + 1)
    kb = getattr(retriever, "name", "the knowledge base")  # a KnowledgeBase names its folder (never a password)
    if stats.gold_found == 0:
        raise InputError(f"{name}: no example's answer was found in a passage of {kb}; RAFT needs the "
                         "documents that hold the answers (give each row a 'source', or ingest the documents)")
    Path(out).mkdir(parents=True, exist_ok=True)
    length = seq_tokens(prompts + (val or []), tokenizer, settings.finetune.max_seq_tokens)
    atomic_write_json(Path(out) / "raft.json", {"kb": str(kb), "settings": settings.raft.model_dump(),
                                                 "distractors_per_prompt": distractor_count(settings),
                                                 "max_seq_tokens": length, **stats.to_json(), **(about or {})})
    print(f"RAFT: {stats.gold_found} of {stats.examples} examples have a gold passage "
          f"({stats.gold_by_source} by their source), {stats.retrieved_gold} retrieved in the top "
          f"{settings.retrieval.k} (gold share {stats.gold_share:.2f}), {stats.gold_in_prompt} prompts hold it, "
          f"{stats.distractors} distractors; longest example {length} tokens", file=sys.stderr)
    return prompts, val, length


def gold_coverage(examples: list[Example], retriever: Retriever, settings: Settings) -> dict[str, Any]:
    """`data check --kb`: how many examples have a gold passage in the knowledge base, and how it was found."""
    found = by_source = 0
    missing = []
    for example in examples:
        if example.text is not None:
            continue
        question, _ = question_of(example)
        gold, _ = find_gold(example, question, retriever, settings.raft.candidates)
        found += gold is not None
        by_source += gold is not None and gold.source == example.gold_source
        if gold is None:
            missing.append(example.where())
    return {"examples": len(examples), "with_gold_passage": found, "by_source": by_source,
            "by_answer_text": found - by_source, "without": missing}
