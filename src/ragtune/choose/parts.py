"""The pure pieces of the bake-off recipe: the dev / test split, the tuning pick, tuned values applied to the
settings, and closed-book training examples in the contestant's own prompt."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ragtune.config import Settings
from ragtune.evaluate.qa import QAItem, QASet
from ragtune.models.prompts import closed_book_messages
from ragtune.types import Example


@dataclass
class Split:
    dev: list[QAItem]
    test: list[QAItem]
    train: list[QAItem] = field(default_factory=list)  # the QA set's own training split, when it has one


def split_questions(qa: QASet, settings: Settings, train_given: bool = False) -> Split:
    """The QA set's own splits when it declares them (train / validation / test), else a seeded cut of a small
    dev part (for tuning) off the test part (for the verdict). Dev and test never share a question. With a
    training file given (``train_given``), every question goes to dev and test, whatever split is declared."""
    c = settings.choose
    declared = {it.metadata.get("split") for it in qa.items} - {None}
    if {"test"} <= declared and not train_given:
        by = {name: [it for it in qa.items if it.metadata.get("split") == name] for name in declared}
        dev = by.get("validation") or by.get("dev") or []
        return Split(dev[:c.dev_max], by["test"][:c.test_max], by.get("train", []))
    items = list(qa.items)
    random.Random(c.seed).shuffle(items)
    n_dev = min(max(round(len(items) * c.dev_fraction), c.dev_min), c.dev_max, len(items) // 3)
    return Split(items[:n_dev], items[n_dev:][:c.test_max])


def best_trial(trials: list[dict[str, Any]], gate: float, template: str = "fenced") -> dict[str, Any]:
    """The best headline score; on a tie, more answers within reach, then fewer and shorter passages, then the
    configured relevance gate, then the configured prompt template."""
    return max(trials, key=lambda t: (round(t["score"], 6), round(t["reach"], 6), -t["k"],
                                      -(t["context_sentences"] or 99), t["min_relevance"] == gate,
                                      t.get("template", template) == template))


def with_values(settings: Settings, chosen: dict[str, Any]) -> Settings:
    """``settings`` with the values tuning chose (dotted keys, as choose.json records them)."""
    out = settings.model_copy(deep=True)
    for key, value in chosen.items():
        section, name = key.split(".")
        setattr(getattr(out, section), name, value)
    return out


def examples_from(items: list[QAItem], instruction: str | None, source: str) -> list[Example]:
    """Closed-book training examples in the exact prompt the fine-tuned model will be asked with."""
    return [Example(messages=closed_book_messages(it.question, instruction)
                    + [{"role": "assistant", "content": it.answers[0]}], source=source, line=i + 1,
                    gold_source=it.gold_sources[0] if it.gold_sources else None)
            for i, it in enumerate(items) if it.answers and not it.is_impossible]
