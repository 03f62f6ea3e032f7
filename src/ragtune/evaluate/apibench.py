"""Gorilla APIBench (any hub: TensorFlow Hub, Torch Hub, ...) as a fine-tuning task: instruction → the API call.

    splits = load_apibench("../shared/data/tfhub-apibench")      # {"train", "validation", "test"}
    get_metric("call")(reply, [gold_api_call])                   # scoring: ragtune.evaluate.scorers

Split: ``eval.jsonl`` shuffled with ``random.Random(seed)`` and cut 80 / 10 / 10 % (seed 0:
550 / 69 / 69 items). Scoring is the ``call`` metric, the one `ragtune eval` uses: the reply's call compared
with the gold ``api_call`` as a syntax tree (Gorilla's AST sub-tree match).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ragtune.errors import InputError
from ragtune.types import Example

_INSTRUCTION = re.compile(r"###\s*Instruction:\s*(.*?)\s*(?:###\s*Output:|$)", re.S)


def instruction_of(code: str) -> str | None:
    """The user's request inside an APIBench ``code`` field (the text before ``###Output:``); None without one."""
    m = _INSTRUCTION.search(code)
    return m.group(1).strip() if m else None


def system_prompt(row: dict) -> str:
    """The task instruction, naming the hub the rows come from (short: every token is paid for in training and
    decoding). TF Hub rows give "Answer with the TensorFlow Hub API call."."""
    hub = row.get("provider") or (row.get("api_data") or {}).get("framework")
    return f"Answer with the {hub} API call." if isinstance(hub, str) and hub.strip() else "Answer with the API call."


def to_example(row: dict, source: str, line: int) -> Example:
    messages = [{"role": "system", "content": system_prompt(row)},
                {"role": "user", "content": instruction_of(row["code"]) or row["code"].strip()},
                {"role": "assistant", "content": row["api_call"]}]
    return Example(messages=messages, source=source, line=line)


def load_apibench(folder: str | Path, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
                  ) -> dict[str, list[Example]]:
    """The seeded train / validation / test split of ``eval.jsonl`` as chat examples."""
    path = Path(folder) / "eval.jsonl" if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        raise InputError(f"{path}: not found; pass an APIBench-style folder (with eval.jsonl)")
    examples = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            row = None  # a bad line: the QA loader names it (evaluate.qa); the split is of the usable rows
        if isinstance(row, dict) and isinstance(row.get("code"), str) and isinstance(row.get("api_call"), str):
            examples.append(to_example(row, str(path), line))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_train = round(len(order) * fractions[0])
    n_val = round(len(order) * fractions[1])
    parts = {"train": order[:n_train], "validation": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {name: [examples[i] for i in sorted(idx)] for name, idx in parts.items()}
