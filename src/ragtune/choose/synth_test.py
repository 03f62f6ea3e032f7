"""Synthetic test questions for `ragtune choose`: held out from training synthesis, chunk by chunk.

A QA set of fewer than 30 test questions cannot separate five contestants, and a team with documents only has
none. Both get questions synthesised from DOCS (`finetune.synth`, extractive by default, or the configured
generator with ``choose.synth_generator = "llm"``), at most one per chunk, from a seeded sample of chunks. The
chunks used are `reserved`: training synthesis never sees them, so no test question's passage was trained on.
Each question is labelled ``metadata["synthetic"] = True``; evaluation scores the union once and reports the
team's and the synthetic questions each on its own (`evaluate.scoring.by_group`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragtune.config import Settings
from ragtune.errors import InputError
from ragtune.evaluate.qa import QAItem, QASet
from ragtune.evaluate.scorers import infer_metric, metric_score
from ragtune.finetune.synth import held_out_pairs, kb_chunks

TOP_UP_TO = 30  # test questions below which a verdict rarely separates five contestants


def wanted(test: int, setting: int | None, documents_only: bool = False) -> int:
    """How many synthetic test questions to add: ``choose.synth_test`` when set (0 = none), else enough to top
    the test part up to 30 (all 30 with no QA file)."""
    if setting is not None:
        return setting
    return TOP_UP_TO if documents_only else max(0, TOP_UP_TO - test)


def held_out(kb: Any, n: int, settings: Settings, metric: str | None = None, max_words: int = 5,
             avoid: set[str] | None = None) -> list[QAItem]:
    """Up to ``n`` questions, one per chunk, from a seeded shuffle of half the knowledge base's chunks
    (`held_out_pairs`: the other half is left to training synthesis). Answers that would not score 1 against
    themselves under ``metric`` (e.g. ``call``) are passed over; so are questions in ``avoid`` (normalised text of
    the team's questions)."""
    accept = (lambda a: metric_score([a], a, metric) >= 1.0) if metric else None
    pairs = held_out_pairs(kb_chunks(kb), n, settings.choose.seed, settings.choose.synth_generator,
                           generator_for(settings), settings.generator.concurrency, max_words, avoid, accept)
    return [QAItem(f"synth-test-{p.chunk_id}", p.question, [p.answer], [p.source],
                   metadata={"synthetic": True, "chunk_id": p.chunk_id, "kind": p.kind}) for p in pairs]


def reserved(items: list[QAItem]) -> set[str]:
    """The chunk ids synthetic questions came from: training synthesis leaves these chunks out."""
    return {it.metadata["chunk_id"] for it in items if it.metadata.get("synthetic") and "chunk_id" in it.metadata}


def top_up(kb: Any, team: list[QAItem], test: list[QAItem], settings: Settings, metric: str, max_words: int,
           say: Callable[[str], None]) -> list[QAItem]:
    """The synthetic questions to add to a team's ``test`` part (none when DOCS yields none), said."""
    n = wanted(len(test), settings.choose.synth_test)
    added = held_out(kb, n, settings, metric, max_words, {" ".join(it.question.lower().split()) for it in team})
    if added:
        say(f"  test: {len(test)} of your questions + {len(added)} synthetic ones from chunks kept out of training "
            f"synthesis ({n} wanted; choose.synth_test, --synth-test 0 turns this off)")
    return added


def documents_only_tests(settings: Settings) -> int:
    """How many test questions to synthesise with no QA file; 0 is refused (checked before DOCS is indexed)."""
    test = wanted(0, settings.choose.synth_test, documents_only=True)
    if test == 0:
        raise InputError("choose.synth_test = 0 with no QA file: nothing to test on; give a QA file or a count")
    return test


def documents_qa(kb: Any, settings: Settings, metric: str | None = None) -> QASet:
    """A whole QA set from DOCS, for a team with no questions: ``choose.synth_test`` test questions (30 unless
    set) and ``choose.dev_min`` more for the dev part, scored by ``metric`` or the one their answers call for
    (`infer_metric`)."""
    n = documents_only_tests(settings) + settings.choose.dev_min
    items = held_out(kb, n, settings, metric)
    if len(items) < 4:
        raise InputError(f"DOCS: only {len(items)} question(s) could be synthesised from {len(kb)} chunks; "
                         "give a QA file, or more text")
    name, reason = metric or "", "--metric"
    if not metric:
        name, why = infer_metric([it.answers for it in items])
        reason = f"inferred: {why}"
    return QASet("synthetic from DOCS", items, metric=name, metric_reason=f"{reason} (synthetic questions)")


def generator_for(settings: Settings) -> Any:
    """The configured model for ``synth_generator = "llm"`` (an endpoint or local model); None for extractive."""
    if settings.choose.synth_generator != "llm":
        return None
    from ragtune.models.backends import load_generator

    return load_generator(settings.generator)
