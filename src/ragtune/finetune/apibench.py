"""Gorilla APIBench (TensorFlow Hub) as a fine-tuning task: instruction → the TF Hub API call.

    splits = load_apibench("../shared/data/tfhub-apibench")      # {"train", "validation", "test"}
    same_api("hub.load('https://tfhub.dev/google/yamnet/1')", gold)  # scoring

Split: ``eval.jsonl`` shuffled with ``random.Random(seed)`` and cut 80 / 10 / 10 % (seed 0:
550 / 69 / 69 items). Scoring follows the dataset's rule ("the generated call names the same API"):
the first TF Hub model handle in each text is normalised and compared.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ragtune.errors import InputError
from ragtune.finetune.data import Example

SYSTEM = "Answer with the TensorFlow Hub API call."  # short: every token is paid for in training and decoding
_INSTRUCTION = re.compile(r"###\s*Instruction:\s*(.*?)\s*(?:###\s*Output:|$)", re.S)
_URL = re.compile(r"(?:https?://)?(?:www\.)?(tfhub\.dev|kaggle\.com/models)/[^\s'\"(),\]]+", re.I)
_CALL = re.compile(r"hub\.(?:load|KerasLayer)\(\s*['\"]([^'\"]+)['\"]")


def instruction_of(code: str) -> str:
    """The user's request inside an APIBench ``code`` field (the text before ``###Output:``)."""
    m = _INSTRUCTION.search(code)
    return (m.group(1) if m else code).strip()


def api_target(text: str) -> str | None:
    """The normalised model handle a text calls: host + path, lower-case, no scheme, query or trailing '/'."""
    m = _URL.search(text)
    if m:
        handle = m.group(0)
    else:
        m = _CALL.search(text)
        if not m:
            return None
        handle = m.group(1)
    handle = re.sub(r"^(?:https?://)?(?:www\.)?", "", handle.strip().lower())
    return handle.split("?")[0].rstrip("/.") or None


def same_api(prediction: str, gold_api_call: str) -> bool:
    """True when the prediction names the same TF Hub model as the gold ``api_call``."""
    gold = api_target(gold_api_call)
    return gold is not None and api_target(prediction) == gold


def to_example(row: dict, source: str, line: int) -> Example:
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": instruction_of(row["code"])},
                {"role": "assistant", "content": row["api_call"]}]
    return Example(messages=messages, source=source, line=line)


def load_apibench(folder: str | Path, seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
                  ) -> dict[str, list[Example]]:
    """The seeded train / validation / test split of ``eval.jsonl`` as chat examples."""
    path = Path(folder) / "eval.jsonl" if Path(folder).is_dir() else Path(folder)
    if not path.is_file():
        raise InputError(f"{path}: not found; pass the tfhub-apibench folder (with eval.jsonl)")
    examples = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if text.strip():
            examples.append(to_example(json.loads(text), str(path), line))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_train = round(len(order) * fractions[0])
    n_val = round(len(order) * fractions[1])
    parts = {"train": order[:n_train], "validation": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {name: [examples[i] for i in sorted(idx)] for name, idx in parts.items()}
