"""Re-running `ragtune choose`: changed inputs redo exactly the stages made from them (and their stale outputs go),
--fresh starts over without touching the user's files, a busy --out is refused in one line naming its holder, and
an answer is never logged twice."""

from __future__ import annotations

import json
import os

import pytest
from tests.test_choose import _cli, bakeoff  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from ragtune.choose import Choice
from ragtune.choose.inputs import DEPENDS, drop, fingerprints, fresh, stale, training_inputs
from ragtune.config import Settings
from ragtune.errors import StorageError
from ragtune.evaluate.qa import QAItem
from ragtune.evaluate.store import PredictionLog
from ragtune.index.writes import writer_lock

ALL = {stage: {} for stage in DEPENDS}


def _prints(tmp_path, **change):
    docs, qa = tmp_path / "docs", tmp_path / "qa.jsonl"
    return fingerprints([docs], qa, None, change.get("settings", Settings()), "m", "f1", change.get("given", {}))


def test_each_input_redoes_the_stages_made_from_it(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha")
    (tmp_path / "qa.jsonl").write_text("{}")
    before = _prints(tmp_path)
    assert _prints(tmp_path) == before  # stable
    (tmp_path / "qa.jsonl").write_text('{"question": "q"}')
    changed, redo = stale(before, _prints(tmp_path), ALL, training_inputs(tmp_path / "t.jsonl", False))
    assert changed == ["qa"] and redo == ["check", "split", "train_data", "tune", "raft", "evaluate"]
    qa_now = _prints(tmp_path)
    (tmp_path / "docs" / "b.txt").write_text("beta")
    changed, redo = stale(qa_now, _prints(tmp_path), ALL, training_inputs(None, False))  # synthetic training
    assert changed == ["docs"] and redo == ["index", "train_data", "tune", "finetune", "raft", "evaluate"]
    docs_now = _prints(tmp_path)
    changed, redo = stale(docs_now, _prints(tmp_path, given={"knowledge_change": "daily"}), ALL, set())
    assert changed == ["constraints"] and redo == ["evaluate"]
    embedder = Settings(embedder={"batch_size": 4})
    changed, redo = stale(docs_now, _prints(tmp_path, settings=embedder), ALL, set())
    assert changed == ["indexing"] and "index" in redo and "check" not in redo
    assert stale({}, docs_now, ALL, set()) == ([], [])  # a first run, or one recorded before fingerprints


def test_settings_no_stage_reads_redo_nothing(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "qa.jsonl").write_text("{}")
    before = _prints(tmp_path)
    for unread in ({"serve": {"port": 9000}}, {"raft": {"kb_kinds": ["cloze"], "kb_max_steps": 40}}):
        assert _prints(tmp_path, settings=Settings(**unread)) == before  # `finetune --kb KB --raft` or `serve` only
    changed, redo = stale(before, _prints(tmp_path, settings=Settings(raft={"distractors": 1})), ALL, set())
    assert changed == ["settings"] and "raft" in redo  # what choose's RAFT stage reads still counts


def test_dropping_a_stage_removes_only_what_choose_wrote_for_it(tmp_path):
    for name in ("finetuned/checkpoints", "raft", "tune", "kb", "mine"):
        (tmp_path / name).mkdir(parents=True)
    for name in ("predictions.jsonl", "results.json", "notes.txt", "choose.json"):
        (tmp_path / name).write_text("x")
    state = {"finetune": {}, "evaluate": {}, "check": {}}
    drop(tmp_path, state, ["finetune", "evaluate"])
    assert state == {"check": {}} and not (tmp_path / "finetuned").exists()
    assert not (tmp_path / "predictions.jsonl").exists() and (tmp_path / "raft").is_dir()
    fresh(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "notes.txt"]  # the user's files stay


def test_a_second_run_into_a_busy_out_is_one_line_naming_the_holder(bakeoff):  # noqa: F811
    tmp, _ = bakeoff
    (tmp / "busy").mkdir()
    with writer_lock(tmp / "busy"):
        with pytest.raises(StorageError, match=rf"busy: in use by process {os.getpid()} \(another `ragtune choose`"):
            Choice("qa.jsonl", "busy", say=lambda line: None).run(["docs"])
    assert not (tmp / "busy" / "choose.json").exists()  # nothing was done


def test_an_answer_already_logged_is_not_written_again(tmp_path):
    log = PredictionLog(tmp_path / "predictions.jsonl")
    rec = {"variant": "rag", "model": "m", "id": "1", "question": "q?", "answers": ["a"], "prediction": "a"}
    log.append(rec)
    log.append({**rec, "latency_s": 0.2})  # a resumed stage asking again
    PredictionLog(tmp_path / "predictions.jsonl").append(rec)  # or another process that read the log before
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 1
    assert log.get("rag", "m", QAItem("1", "q?", ["a"])) is not None


def test_a_rerun_redoes_the_stages_whose_inputs_changed_and_fresh_starts_over(bakeoff, monkeypatch):  # noqa: F811
    tmp, _ = bakeoff
    for stage in ("finetune", "raft"):  # training is not what this test is about
        monkeypatch.setattr(Choice, stage, lambda self, *made, stage=stage: self.done(stage))
    monkeypatch.setenv("RAGTUNE_CHOOSE__K", "[2]")
    first = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "c"])
    assert first.exit_code == 0, first.output
    same = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "c"])
    assert "changed:" not in same.output and same.output.count("done earlier") == 4, same.output
    rows = (tmp / "qa.jsonl").read_text().splitlines()
    (tmp / "qa.jsonl").write_text("\n".join(rows[:-2]))  # two questions fewer
    again = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "c"])
    assert again.exit_code == 0, again.output
    # synthetic training data is shaped by the dev answers and never repeats a test question: it is redone too
    assert "qa file changed: redoing check, split, train_data, tune, finetune, raft, evaluate" in again.output
    assert "index: done earlier" in again.output and "[2/8] check: done earlier" not in again.output
    results = json.loads((tmp / "c" / "results.json").read_text())
    asked = {json.loads(line)["question"] for line in (tmp / "c" / "predictions.jsonl").open()}
    assert results["qa"]["n"] - results["qa"]["n_synthetic"] == 12 and "What is the capital of Land 19?" not in asked  # no stale answer kept
    (tmp / "docs" / "land19.txt").unlink()
    docs = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "c"])
    assert "DOCS changed: redoing index" in docs.output and "index: done earlier" not in docs.output
    # updated in place: the removed file pruned, the other 19 kept (not re-embedded)
    assert json.loads((tmp / "c" / "choose.json").read_text())["index"] | {"seconds": 0} == {
        "chunks": 19, "removed": 1, "seconds": 0}
    assert "1 source(s) no longer in DOCS removed from the index" in docs.output
    (tmp / "c" / "mine.txt").write_text("the user's")
    over = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "c", "--fresh"])
    assert over.exit_code == 0 and "done earlier" not in over.output and (tmp / "c" / "mine.txt").is_file()


def test_a_copied_or_touched_input_with_the_same_contents_is_not_new_data(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("alpha")
    (tmp_path / "qa.jsonl").write_text('{"question": "q"}')
    known: dict = {}
    before = fingerprints([tmp_path / "docs"], tmp_path / "qa.jsonl", None, Settings(), "m", "f1", {}, known)
    assert set(known) == {str((tmp_path / "docs" / "a.txt").resolve()), str((tmp_path / "qa.jsonl").resolve())}
    os.utime(tmp_path / "docs" / "a.txt", ns=(1, 1))  # a checkout or a copy: another mtime, the same bytes
    again = fingerprints([tmp_path / "docs"], tmp_path / "qa.jsonl", None, Settings(), "m", "f1", {}, known)
    assert again == before and known[str((tmp_path / "docs" / "a.txt").resolve())][1] == 1
    (tmp_path / "docs" / "a.txt").write_text("alpho")  # same size, other contents
    changed, redo = stale(before, fingerprints([tmp_path / "docs"], tmp_path / "qa.jsonl", None, Settings(), "m",
                                               "f1", {}, known), ALL, set())
    assert changed == ["docs"] and "index" in redo
    (tmp_path / "docs" / "a.txt").unlink()
    fingerprints([tmp_path / "docs"], tmp_path / "qa.jsonl", None, Settings(), "m", "f1", {}, known)
    assert list(known) == [str((tmp_path / "qa.jsonl").resolve())]  # a removed file is forgotten
