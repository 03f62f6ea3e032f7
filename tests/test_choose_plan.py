"""`ragtune choose --plan`: every check, what a run would do and reuse, and a measured estimate, with DOCS counted
and never indexed; a bad --train stops a real run before DOCS is indexed."""

from __future__ import annotations

import json

from tests.test_choose import _cli, bakeoff  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from ragtune.choose import STAGES, Choice
from ragtune.choose.plan import estimate, plan
from ragtune.index.knowledge_base import KnowledgeBase


def test_plan_checks_and_estimates_without_indexing_then_reports_what_a_rerun_reuses(bakeoff, monkeypatch):  # noqa: F811
    tmp, _ = bakeoff
    (tmp / "qa.jsonl").write_text((tmp / "qa.jsonl").read_text() + "\n{\"question\": \"\", \"answers\": [\"x\"]}")
    result = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "p", "--plan", "--json"])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.output[result.output.index("{"):])
    assert (planned["questions"], planned["dev"], planned["test"]) == (20, 6, 14)
    assert planned["skipped"][0]["line"] == 21 and planned["skipped"][0]["reason"]
    assert planned["metric"]["name"] == "f1" and planned["metric"]["reason"]
    assert planned["train_examples"]["origin"].startswith("synthetic") and planned["train_examples"]["available"] > 0
    assert planned["stages"] == {stage: "run" for stage in STAGES} and planned["docs"]["files"] == 20
    # twenty one-line files: short chunks, so RAG and RAFT prompts are timed at that length, not a whole chunk's
    assert planned["docs"]["chunks_estimated"] == 20
    assert planned["docs"]["chunk_chars_estimated"] == sum(p.stat().st_size for p in (tmp / "docs").iterdir()) // 20
    assert set(planned["estimated_seconds"]) == set(STAGES) and planned["estimated_seconds"]["evaluate"] > 0
    assert not (tmp / "p" / "choose.json").exists() and len(KnowledgeBase(tmp / "p" / "kb")) == 0  # nothing ran
    for stage in ("finetune", "raft"):  # training is not what this test is about
        monkeypatch.setattr(Choice, stage, lambda self, *made, stage=stage: self.done(stage))
    monkeypatch.setenv("RAGTUNE_CHOOSE__K", "[2]")
    assert CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "p"]).exit_code == 0
    ran = Choice("qa.jsonl", "p", say=lambda line: None)
    unit = {"embed_per_chunk": 0.0, "answer_closed": 0.0, "answer_rag": 1.0, "train_pass": 0.0, "train_pass_rag": 0.0}
    assert estimate(ran.settings, unit, 0, 1, 0, 0)["tune"] == len(ran.state["tune"]["trials"])  # every trial counted
    reused = plan(Choice("qa.jsonl", "p", say=lambda line: None), ["docs"])
    assert all(reused["stages"][s] == "reuse" for s in STAGES if s not in ("split", "train_data"))
    assert reused["estimated_seconds"].keys() == {"split", "train_data"}
    (tmp / "docs" / "land0.txt").write_text("The capital of Land 0 is Zembla, still.")
    redo = plan(Choice("qa.jsonl", "p", say=lambda line: None), ["docs"])
    assert redo["changed"] == ["docs"] and redo["stages"]["index"] == "run" and redo["stages"]["check"] == "reuse"
    text = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "p", "--plan"]).output
    assert "questions: 20 (6 dev, 14 test), 1 lines skipped" in text and "estimated total" in text


def test_a_bad_training_file_stops_plan_and_run_before_docs_are_indexed(bakeoff):  # noqa: F811
    tmp, _ = bakeoff
    (tmp / "train.jsonl").write_text('{"question": "q?", "answer": "a"}\n{"nothing": 1}\n')
    for extra in (["--plan"], []):
        result = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "b", "--train", "train.jsonl",
                                             *extra])
        assert result.exit_code != 0 and "train.jsonl" in str(result.exception)
        assert not (tmp / "b" / "choose.json").exists()  # DOCS was not indexed
