"""Synthetic test questions in `ragtune choose`: a small test part topped up, documents only, and the report's
note when retrieval limits RAG. Tiny models built in code; the training stages are patched out (they are not
what these tests are about), the training examples they were handed are kept to check leakage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ragtune.choose import Choice
from ragtune.choose.synth_test import wanted
from ragtune.evaluate.report import _choice, reach_note
from test_choose import PLACES, _cli, bakeoff  # noqa: F401  (the fixture: 20 one-chunk documents, 20 questions)


@pytest.fixture
def trained(monkeypatch) -> dict[str, Any]:
    """finetune and raft record their stage and keep what they were handed, without training."""
    handed: dict[str, Any] = {}

    def stage(name: str):
        def run(self, *made):
            handed[name] = made[0]
            self.done(name)
        return run

    for name in ("finetune", "raft"):
        monkeypatch.setattr(Choice, name, stage(name))
    return handed


def _sources(examples) -> set[str]:
    return {Path(e.gold_source).name for e in examples}


def test_a_small_test_part_is_topped_up_with_held_out_synthetic_questions(bakeoff, trained):  # noqa: F811
    tmp, _ = bakeoff
    lines: list[str] = []
    results = Choice("qa.jsonl", "top", say=lines.append).run(["docs"])
    qa = results["qa"]
    # 20 questions - 6 for tuning = 14, and up to 16 synthetic to reach 30; but at most one from each of half the
    # 20 chunks (near-duplicate questions are dropped)
    n = qa["n_synthetic"]
    assert 1 <= n <= 10 and (qa["n"], qa["synthetic"]) == (14 + n, False)
    asked = [json.loads(line) for line in (tmp / "top" / "predictions.jsonl").open()]
    synthetic = {r["id"] for r in asked if r["synthetic"]}
    assert len(synthetic) == n and all(i.startswith("synth-test-") for i in synthetic)
    # disjoint by chunk: no training pair was synthesised from a chunk a test question came from
    held = {Path(r["gold_sources"][0]).name for r in asked if r["synthetic"]}
    assert held and not held & _sources(trained["finetune"])
    rag = results["variants"]["rag"]
    assert (rag["groups"]["team"]["n"], rag["groups"]["synthetic"]["n"]) == (14, n)
    team = [r["scores"]["f1"] for r in asked if r["variant"] == "rag" and not r["synthetic"]]
    assert rag["groups"]["team"]["f1"] == pytest.approx(sum(team) / len(team))
    page = (tmp / "top" / "index.html").read_text()
    assert "Your questions: 14" in page and f"Synthetic questions (from the documents): {n}" in page
    assert any(f"14 of your questions + {n} synthetic" in line for line in lines)
    assert results["choose"]["split"]["synthetic_test"] == n


def test_synth_test_sets_the_count_and_zero_turns_it_off(bakeoff, trained):  # noqa: F811
    off = Choice("qa.jsonl", "off", overrides={"choose.synth_test": 0}, say=lambda line: None).run(["docs"])
    assert (off["qa"]["n"], off["qa"]["n_synthetic"]) == (14, 0) and "groups" not in off["variants"]["rag"]
    three = Choice("qa.jsonl", "three", overrides={"choose.synth_test": 3}, say=lambda line: None).run(["docs"])
    assert (three["qa"]["n"], three["qa"]["n_synthetic"]) == (17, 3)  # the fixture's DOCS yield more than 3
    assert wanted(14, None) == 16 and wanted(40, None) == 0 and wanted(40, 5) == 5 and wanted(0, None, True) == 30


def test_documents_only_builds_test_and_training_sets_from_disjoint_chunks(bakeoff, trained):  # noqa: F811
    tmp, _ = bakeoff
    result = CliRunner().invoke(_cli(), ["choose", "docs", "--out", "only"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp / "only" / "results.json").read_text())
    assert results["qa"]["synthetic"] is True and results["qa"]["metric"] == "f1"  # short spans: infer_metric
    assert "synthetic questions" in results["qa"]["metric_reason"]
    choose = results["choose"]
    assert choose["train_data"]["synthetic"] and 4 <= choose["split"]["dev"] + choose["split"]["test"] <= 10
    asked = {Path(json.loads(line)["gold_sources"][0]).name for line in (tmp / "only" / "predictions.jsonl").open()}
    dev = {Path(json.loads(line)["gold_sources"][0]).name
           for line in next((tmp / "only" / "tune").iterdir()).joinpath("predictions.jsonl").open()}
    assert asked and dev and not (asked | dev) & _sources(trained["finetune"])
    page = (tmp / "only" / "index.html").read_text()
    assert page.index("No QA file: every question here was synthesised") < page.index("<h2>Quality</h2>")
    assert ("limited by retrieval" in result.output) == (reach_note(results) is not None)


def test_documents_only_with_no_test_questions_asked_for_is_refused(bakeoff):  # noqa: F811
    result = CliRunner().invoke(_cli(), ["choose", "docs", "--out", "none", "--synth-test", "0"])
    assert result.exit_code == 1 and "choose.synth_test = 0 with no QA file" in str(result.exception)
    assert "[1/8] index" not in result.output  # refused before DOCS is indexed


def test_low_reach_says_rag_is_limited_by_retrieval_and_names_the_levers():
    def trial(k: int, reach: float) -> dict[str, Any]:
        return {"k": k, "context_sentences": 0, "min_relevance": 0.25, "score": 0.1, "reach": reach,
                "latency_p50": 0.5}

    low = {"choose": {"tune": {"why": "best RAG f1", "chosen": {"retrieval.k": 5},
                               "trials": [trial(3, 0.2), trial(5, 0.45)]}}, "variants": {}}
    note = reach_note(low)
    assert note and "at best 45% of the dev questions" in note
    for lever in ("retrieval.k", "chunking.chunk_tokens", "retrieval.rerank", "embedder.model"):
        assert lever in note
    page = "".join(_choice(low))
    assert "limited by retrieval" in page and page.index("limited by retrieval") < page.index("<table>")
    assert "<td>0.450</td>" in page  # the trials table, with reach
    low["choose"]["tune"]["trials"].append(trial(8, 0.5))
    assert reach_note(low) is None  # half within reach: not limited
    untuned = {"variants": {"rag": {"reach": 0.3}}}
    assert "of the test questions" in (reach_note(untuned) or "")


def test_the_console_says_when_retrieval_limits_rag_with_what_tuning_measured(bakeoff, trained, monkeypatch):  # noqa: F811
    tmp, _ = bakeoff
    monkeypatch.setattr("ragtune.evaluate.runner.reach", lambda records: 0.25)  # retrieval misses 3 answers in 4
    result = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "low", "--synth-test", "0"])
    assert result.exit_code == 0, result.output
    assert "RAG is limited by retrieval here: at best 25% of the dev questions" in result.output
    assert "embedder.model" in result.output and result.output.count("  tuned: k=") == 2 + 1  # choose.k = [2, 3], then the other template
    assert "limited by retrieval" in (tmp / "low" / "index.html").read_text()


def test_with_synth_generator_llm_the_configured_model_writes_the_questions(monkeypatch):
    """``choose.synth_generator = "llm"``: held-out questions come from the configured generator (an endpoint in
    use; here a function answering JSON from the chunk), one per chunk, from half the chunks, labelled synthetic."""
    from types import SimpleNamespace

    from ragtune.choose.synth_test import held_out, reserved
    from ragtune.config import Settings
    from ragtune.types import Chunk

    chunks = [Chunk(f"c{i}", f"land{i}.txt", f"The capital of Land {i} is {p}.", 0) for i, p in enumerate(PLACES)]
    kb = SimpleNamespace(store=SimpleNamespace(chunks=lambda: chunks))
    asked: list[str] = []

    def generate(messages, **_):
        text = messages[-1]["content"].rsplit("\n", 1)[-1]
        asked.append(text)
        place = text.split()[-1][:-1]
        return json.dumps({"question": f"{place[::-1]} reversed is?", "answer": place})  # not near-duplicates

    monkeypatch.setattr("ragtune.models.backends.load_generator", lambda settings: generate)
    settings = Settings.model_validate({"choose": {"synth_generator": "llm"}})
    items = held_out(kb, 30, settings, "f1")
    assert len(items) == 10 == len(asked) and all(it.metadata["kind"] == "llm" for it in items)
    assert {it.answers[0] for it in items} <= set(PLACES) and len(reserved(items)) == 10
    assert held_out(kb, 3, Settings(), "f1")[0].metadata["kind"] == "cloze"  # the default needs no model
