"""The team's training data in `ragtune choose`: loaded and checked before any work, asked in the contestant's
prompt, and never cut silently.

`load_train` reads ``--train`` (before DOCS is indexed) and gives rows that lack a system message the QA set's
instruction, in exactly the prompt the fine-tuned contestant is asked with (`closed_book_messages`). `capped`
applies the `budget` (``choose.max_train_examples`` for the team's rows, 0 = all by default;
``choose.max_synthetic_examples`` for synthetic pairs) as a seeded sample, and `cap_note` says how many rows were
used of how many.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ragtune.config import ChooseSettings, FinetuneSettings
from ragtune.errors import CheckpointMismatch
from ragtune.models.prompts import closed_book_messages
from ragtune.types import Example


def with_instruction(examples: list[Example], instruction: str | None) -> list[Example]:
    """Rows with a user turn and no system message get the task's instruction, as the contestant is asked;
    rows that bring their own system message, and raw text, are kept as they are."""
    if not instruction or not instruction.strip():
        return examples
    out = []
    for e in examples:
        msgs = e.messages
        if msgs and msgs[0]["role"] == "user" and not any(m["role"] == "system" for m in msgs):
            msgs = closed_book_messages(msgs[0]["content"], instruction) + list(msgs[1:])
            e = replace(e, messages=msgs)
        out.append(e)
    return out


def load_train(path: Path, fields: dict[str, str] | None, instruction: str | None) -> list[Example]:
    """``--train``, checked row by row (an InputError names the first bad one), with the task's instruction."""
    from ragtune.finetune.data import load_examples

    return with_instruction(load_examples(path, fields), instruction)


def budget(choose: ChooseSettings, synthetic: bool) -> tuple[int, str]:
    """The cap on training rows (0: none) and the setting it comes from: the team's rows are all used by default,
    synthetic pairs are a time budget."""
    if synthetic:
        return choose.max_synthetic_examples, "choose.max_synthetic_examples"
    return choose.max_train_examples, "choose.max_train_examples"


def capped(examples: list[Example], budget: int, seed: int) -> list[Example]:
    """At most ``budget`` examples (0: all), a seeded sample kept in the original order."""
    from ragtune.finetune.data import seeded_sample

    return seeded_sample(examples, budget, seed)


def cap_note(used: int, available: int, seconds_all: float | None = None,
             setting: str = "choose.max_train_examples") -> str | None:
    """One line saying the training data was cut, and what the whole of it would take (None when not cut)."""
    if used >= available:
        return None
    whole = f"; all {available} would take about {seconds_all / 60:.0f} min of training" if seconds_all else (
        f"; all {available} would take about {available / used:.1f}x as long")
    return f"training on {used} of {available} rows ({setting}, a time budget){whole}; --train-all uses every row"


def train_or_restart(folder: Path, examples: list[Example], model: str, settings: FinetuneSettings,
                     say: Callable[[str], None]) -> dict[str, Any]:
    """Train a stage's model into ``folder``, resuming its checkpoints; its training report. Checkpoints of other
    data than the stage builds now (choose's inputs are unchanged, else the stage was dropped: ragtune itself
    changed how it builds them) cannot be resumed, so the stage trains from the start and says so, rather than
    stop the bake-off with its other stages done."""
    from ragtune.finetune.train import FineTuner

    checkpoints = folder / "checkpoints"
    try:
        return FineTuner(model, settings=settings).fit(examples, None, folder, resume=checkpoints.is_dir()).report
    except CheckpointMismatch:
        say(f"  {checkpoints}: made with other training data than this run builds; training this stage from "
            "the start")
    shutil.rmtree(checkpoints)
    return FineTuner(model, settings=settings).fit(examples, None, folder, resume=False).report
