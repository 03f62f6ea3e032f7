"""`ragtune finetune --kb KB --raft` with no dataset: a RAFT reader trained on question/answer pairs synthesised
from the knowledge base's own chunks.

A seeded half of the chunks gives the held-out questions (`synth.held_out_pairs`: one per chunk, short answers,
``raft.kb_heldout`` of them); every other chunk gives the training pairs (`synth.training_pairs`, extractive,
``raft.kb_per_chunk`` sentences a chunk made into ``raft.kb_kinds`` pairs, at most ``raft.kb_max_examples`` of
them). The training pairs become RAFT prompts exactly as a dataset's rows would (`raft.raft_prompts`: the prompt
`ask` sends, the gold passage among retrieved distractors). The pairs go to ``out/synthetic.jsonl``, the held-out
questions to ``out/heldout.jsonl`` (questions whose passages the reader never trained on), and ``about`` labels
the data synthetic in ``raft.json`` and the training report.

    data = kb_raft_data("kb", "smollm2", settings, "runs/raft")
    FineTuner("smollm2", settings=settings.finetune).fit(data.train, data.validation, "runs/raft", about=data.about)
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragtune.config import FinetuneSettings, Settings
from ragtune.errors import InputError
from ragtune.finetune.data import seeded_sample
from ragtune.finetune.raft import check_kb, raft_prompts
from ragtune.finetune.synth import held_out_pairs, kb_chunks, training_pairs, write_pairs
from ragtune.types import Example

SYNTHETIC_FILE, HELDOUT_FILE = "synthetic.jsonl", "heldout.jsonl"


@dataclass
class KbRaftData:
    train: list[Example]  # RAFT prompts with their targets
    validation: list[Example] | None  # None: FineTuner splits off finetune.validation_fraction
    max_seq_tokens: int  # enough for the longest prompt whole
    about: dict[str, Any]  # the training report's label: synthetic, where from, what was held out


def kb_raft_data(kb: str | Path | None, model: str, settings: Settings, out: str | Path) -> KbRaftData:
    """Synthesise, hold out, and build the RAFT prompts (see the module's note)."""
    from ragtune.index.knowledge_base import KnowledgeBase

    folder = check_kb(kb)
    knowledge_base = KnowledgeBase(folder, settings=settings)
    chunks = kb_chunks(knowledge_base)
    if not chunks:
        raise InputError(f"{folder}: the knowledge base holds no chunks; add documents first with "
                         f"`ragtune ingest DOCS --kb {folder}`")
    opts, seed = settings.raft, settings.finetune.seed
    heldout = held_out_pairs(chunks, opts.kb_heldout, seed)
    reserved = {p.chunk_id for p in heldout}
    pairs = training_pairs(chunks, reserved, per_chunk=opts.kb_per_chunk, progress=True, kinds=opts.kb_kinds)
    if len(pairs) < 2:
        raise InputError(f"{folder}: only {len(pairs)} question/answer pair(s) could be synthesised from its "
                         f"{len(chunks)} chunk(s); add documents with more text, or give a dataset")
    used = seeded_sample(pairs, opts.kb_max_examples, seed)
    examples = [Example(messages=[{"role": "user", "content": p.question}, {"role": "assistant", "content": p.answer}],
                        source=SYNTHETIC_FILE, line=i + 1, gold_source=p.source) for i, p in enumerate(used)]
    about = {"synthetic": True, "origin": f"synthetic (extractive, from the chunks of {folder})",
             "chunks": len(chunks), "pairs_synthesised": len(pairs), "pairs_used": len(used),
             "heldout_questions": len(heldout), "heldout_chunks": sorted(reserved),
             "files": {"synthetic": SYNTHETIC_FILE, "heldout": HELDOUT_FILE}}
    train, validation, length = raft_prompts(examples, None, knowledge_base, model, settings, out, str(folder), about)
    write_pairs(used, Path(out) / SYNTHETIC_FILE)
    write_pairs(heldout, Path(out) / HELDOUT_FILE)
    return KbRaftData(train, validation, length, about)


def estimate_seconds(train: list[Example], model: str, finetune: FinetuneSettings) -> tuple[float, int]:
    """Seconds the training would take on this machine (`finetune.estimate`: one training pass of the
    median-length training prompt, timed through the trainer's step, scaled by the run's steps and
    evaluations), and those steps."""
    from ragtune.finetune.data import split_examples
    from ragtune.finetune.estimate import example_seconds, median_example, training_seconds
    from ragtune.finetune.train import plan_run

    per_example = example_seconds(model, finetune, [median_example(train)])[0]
    gc.collect()
    n_train, n_val = (len(part) for part in split_examples(train, finetune.validation_fraction, finetune.seed))
    return training_seconds(n_train, finetune, per_example, n_val), plan_run(n_train, finetune, 1).total
