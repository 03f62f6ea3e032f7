"""`ragtune choose` end to end on tiny models built in code: every stage, the files it promises, the settings it
chose saved to the knowledge base, dev and test kept apart, and resuming after a SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from ragtune.choose import Choice, answer_cap, best_trial, shaped, split_questions
from ragtune.config import Settings
from ragtune.evaluate.qa import QAItem, QASet
from ragtune.finetune.synth import QAPair
from ragtune.models.loading import resolve_model

PLACES = ["Zembla", "Quorra", "Morbek", "Tarkin", "Velmora", "Ostrava", "Kelpie", "Brindle", "Castor", "Dunmore",
          "Elarin", "Fennick", "Galloway", "Hollin", "Islay", "Jorvik", "Kestrel", "Lachlan", "Mirren", "Norwick"]


@pytest.fixture
def bakeoff(tmp_path, tiny_embedder_dir, tiny_lm_dir, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = []
    for i, place in enumerate(PLACES):
        (docs / f"land{i}.txt").write_text(f"The capital of Land {i} is {place}. Land {i} trades in salt and wool. "
                                           f"Its river is the {place}water, which floods in spring.")
        rows.append({"question": f"What is the capital of Land {i}?", "answers": [place],
                     "gold_sources": [f"docs/land{i}.txt"]})
    (tmp_path / "qa.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    monkeypatch.chdir(tmp_path)
    env = {"RAGTUNE_EMBEDDER__MODEL": str(tiny_embedder_dir), "RAGTUNE_GENERATOR__MODEL": str(tiny_lm_dir),
           "RAGTUNE_RAG__MIN_RELEVANCE": "-1", "RAGTUNE_FINETUNE__MAX_STEPS": "2",
           "RAGTUNE_CHOOSE__K": "[2, 3]", "RAGTUNE_CHOOSE__CONTEXT_SENTENCES": "[0]"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return tmp_path, env


def _cli():
    from ragtune.cli.main import _register, app

    _register()
    return app


def test_split_keeps_dev_and_test_apart_and_uses_declared_splits():
    items = [QAItem(str(i), f"q{i}?", ["a"]) for i in range(100)]
    s = split_questions(QASet("x", items), Settings())
    assert len(s.dev) == 15 and len(s.test) == 85 and not {i.id for i in s.dev} & {i.id for i in s.test}
    assert split_questions(QASet("x", items), Settings()).dev == s.dev  # seeded
    for i, it in enumerate(items):
        it.metadata["split"] = ["train", "validation", "test"][i % 3]
    declared = split_questions(QASet("x", items), Settings())
    assert {it.metadata["split"] for it in declared.test} == {"test"} and len(declared.train) == 34
    assert answer_cap([QAItem("1", "q", ["Zembla"])]) == 24
    assert answer_cap([QAItem("1", "q", ["x" * 400])]) == 168  # 101 tokens * 1.5 + 16


def test_synthetic_answers_are_shaped_like_the_tasks():
    def pair(answer: str) -> QAPair:
        return QAPair("q?", answer, "doc.txt", "c1", "text", "cloze")

    span, sentence = pair("Denver Broncos"), pair("The Broncos beat the Panthers 24 to 10 in Santa Clara.")
    short = [QAItem(str(i), "q?", [a]) for i, a in enumerate(["Denver", "Santa Clara", "24 to 10", "1966"] * 3)]
    assert shaped([span, sentence], short) == ([span], 5)  # span answers: sentences dropped
    long = [QAItem(str(i), "q?", ["it runs on the main thread and blocks until the queue is empty " * i])
            for i in range(1, 6)]
    kept, limit = shaped([span, sentence], long)
    assert kept == [span, sentence] and limit > 10  # sentence answers: nothing dropped
    assert shaped([sentence], short) == ([sentence], 5)  # never none left


def test_tuning_prefers_the_score_then_reach_then_the_shorter_prompt_then_the_configured_gate():
    def t(k, s, gate, score, within):
        return {"k": k, "context_sentences": s, "min_relevance": gate, "score": score, "reach": within}

    # a base model that scores 0 everywhere (a narrow task): the gate that turns fewer answers away wins
    tied = [t(3, 3, 0.25, 0.0, 0.5), t(5, 3, 0.25, 0.0, 0.5), t(3, 3, 0.0, 0.0, 0.7)]
    assert best_trial(tied, 0.25) == tied[2]
    # equal reach: the configured gate and the shorter prompt
    even = [t(5, 0, 0.25, 0.1, 0.6), t(3, 3, 0.25, 0.1, 0.6), t(3, 3, 0.0, 0.1, 0.6)]
    assert best_trial(even, 0.25) == even[1]
    # a better score wins whatever its reach (abstaining on unanswerable questions can score)
    assert best_trial([t(3, 3, 0.25, 0.3, 0.4), t(3, 3, 0.0, 0.2, 0.9)], 0.25)["min_relevance"] == 0.25


def test_choose_runs_every_stage_writes_its_files_and_resumes(bakeoff, monkeypatch):
    tmp, _ = bakeoff
    monkeypatch.delenv("RAGTUNE_RAG__MIN_RELEVANCE")  # the default gate: tuning also tries it off
    result = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "choice", "--set",
                                         "knowledge_change=daily"])
    assert result.exit_code == 0, result.output
    out = tmp / "choice"
    results = json.loads((out / "results.json").read_text())
    assert list(results["variants"]) == ["base", "rag", "finetuned", "finetuned+rag", "raft"]
    # 20 questions - 6 for tuning (a third at most), topped up with synthetic ones (tests/test_synth_test.py)
    assert results["qa"]["n"] - results["qa"]["n_synthetic"] == 14 and results["qa"]["n_synthetic"] > 0
    advice = json.loads((out / "advice.json").read_text())
    assert advice["recommendation"] in ("rag", "finetune", "both", "raft", "base", "inconclusive")
    assert results["advice"] == advice and (out / "index.html").is_file()
    choose = results["choose"]
    assert choose["train_data"]["synthetic"] and choose["train_data"]["examples"] > 0
    trials = choose["tune"]["trials"]
    assert [(t["k"], t["context_sentences"], t["min_relevance"]) for t in trials[:2]] == [(2, 0, 0.25), (3, 0, 0.25)]
    assert trials[2]["min_relevance"] == 0.0 and (trials[2]["k"], trials[2]["context_sentences"]) in [(2, 0), (3, 0)]
    assert all(0.0 <= t["reach"] <= 1.0 for t in trials) and (out / "tune" / f"k{trials[2]['k']}-s0-ungated").is_dir()
    # the prompt template is tuned too: each other template once, at the best retrieval found before it
    assert [t["template"] for t in trials] == ["fenced"] * 3 + ["sandwich"]
    assert len({(t["k"], t["context_sentences"], t["min_relevance"]) for t in trials[3:]}) == 1
    assert f'template = "{choose["tune"]["chosen"]["rag.template"]}"' in (out / "kb" / "ragtune.toml").read_text()
    assert results["settings"]["rag"]["template"] == choose["tune"]["chosen"]["rag.template"]
    chosen = choose["tune"]["chosen"]
    toml = (out / "kb" / "ragtune.toml").read_text()
    assert f"k = {chosen['retrieval.k']}" in toml and "max_new_tokens = 24" in toml
    assert f"min_relevance = {chosen['rag.min_relevance']}" in toml
    assert results["settings"]["rag"]["min_relevance"] == chosen["rag.min_relevance"]
    assert results["settings"]["retrieval"]["k"] == choose["tune"]["chosen"]["retrieval.k"]
    tune_ids = {json.loads(line)["id"] for line in (out / "tune" / "k2-s0" / "predictions.jsonl").open()}
    test_ids = {json.loads(line)["id"] for line in (out / "predictions.jsonl").open()}
    assert tune_ids and test_ids and not tune_ids & test_ids
    # RAFT continued from the fine-tuned model: its adapter names that sibling folder as its base, relative, so
    # the choice folder can move
    assert choose["raft"]["started_from"] == "finetuned"
    # RAFT trains raft.epochs, the adapter finetune.epochs
    hyper = {name: json.loads((out / name / "training_report.json").read_text())["hyperparameters"]["epochs"]
             for name in ("finetuned", "raft")}
    assert hyper == {"finetuned": 3.0, "raft": 2.0} and choose["raft"]["epochs"] == 2.0
    raft_base = json.loads((out / "raft" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert raft_base == "../finetuned"
    shutil.copytree(out / "raft", tmp / "moved" / "raft")
    shutil.copytree(out / "finetuned", tmp / "moved" / "finetuned")
    assert resolve_model(str(tmp / "moved" / "raft")).base == str(tmp / "moved" / "raft" / ".." / "finetuned")
    again = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "choice", "--set",
                                        "knowledge_change=daily"])  # the same inputs: every stage is reused
    assert again.exit_code == 0 and again.output.count("done earlier") == 6, again.output


def test_an_environment_variable_is_tuned_and_the_tuned_value_is_the_one_evaluated(bakeoff, monkeypatch):
    """RAGTUNE_RETRIEVAL__K is a default, not a flag: tuning replaces it, and evaluation asks with the tuned k
    (the settings reach it as an object; the kb's ragtune.toml is written for later commands, not read back)."""
    tmp, _ = bakeoff
    monkeypatch.setenv("RAGTUNE_RETRIEVAL__K", "7")
    monkeypatch.setenv("RAGTUNE_CHOOSE__K", "[2]")
    for stage in ("finetune", "raft"):  # training is not what this test is about: base and RAG are evaluated
        monkeypatch.setattr(Choice, stage, lambda self, *made, stage=stage: self.done(stage))
    results = Choice("qa.jsonl", "env", say=lambda line: None).run(["docs"])
    chosen = json.loads((tmp / "env" / "choose.json").read_text())["tune"]["chosen"]
    assert chosen["retrieval.k"] == 2 and results["choose"]["tune"]["chosen"] == chosen
    assert results["settings"]["retrieval"]["k"] == 2 and list(results["variants"]) == ["base", "rag"]
    asked = [json.loads(line) for line in (tmp / "env" / "predictions.jsonl").open()]
    assert {len(r["hits"]) for r in asked if r["variant"] == "rag"} == {2}  # 20 one-chunk documents: k of them


def test_a_set_value_is_kept_not_tuned_and_a_bad_metric_stops_before_any_model(bakeoff):
    tmp, _ = bakeoff
    bad = CliRunner().invoke(_cli(), ["choose", "docs", "qa.jsonl", "--out", "c2", "--metric", "call"])
    assert bad.exit_code != 0 and "does not score 1 against itself" in str(bad.exception)
    assert not (tmp / "c2" / "finetuned").exists()


def test_killed_mid_run_resumes_without_redoing_finished_training(bakeoff):
    tmp, env = bakeoff
    # resuming is what is tested, not tuning or the synthetic top-up: one trial, the team's questions only
    env = {**env, "RAGTUNE_CHOOSE__K": "[2]", "RAGTUNE_CHOOSE__TEMPLATES": '["fenced"]',
           "RAGTUNE_CHOOSE__SYNTH_TEST": "0"}
    cmd = [sys.executable, "-m", "ragtune.cli.main", "choose", "docs", "qa.jsonl", "--out", "killed"]
    proc = subprocess.Popen(cmd, cwd=tmp, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = tmp / "killed" / "choose.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.is_file() and "finetune" in json.loads(state.read_text() or "{}"):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    report = tmp / "killed" / "finetuned" / "training_report.json"
    assert report.is_file()
    stamp = report.stat().st_mtime
    done = subprocess.run(cmd, cwd=tmp, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert report.stat().st_mtime == stamp  # finished training was not redone
    assert "finetune: done earlier" in done.stderr
    assert len(json.loads((tmp / "killed" / "results.json").read_text())["variants"]) == 5


def test_report_shows_the_verdict_and_how_it_was_chosen():
    from ragtune.evaluate.report import _choice

    results = {"advice": {"recommendation": "rag", "reasons": ["rag f1 0.4 vs base 0.1: a clear gain"]},
               "choose": {"split": {"dev": 8, "test": 80, "seed": 0},
                          "train_data": {"origin": "synthetic (extractive, from DOCS)", "examples": 90,
                                         "synthetic": True, "dropped_as_test_questions": 1},
                          "tune": {"why": "best RAG f1 on 8 dev questions", "chosen": {"retrieval.k": 3},
                                   "trials": [{"k": 3, "context_sentences": 0, "score": 0.4, "latency_p50": 1.0}]}}}
    page = "".join(_choice(results))
    assert "Recommendation: rag" in page and "a clear gain" in page and "synthetic: questions generated" in page
    assert "8 dev questions (tuning only)" in page and "<td class=l>3</td>" in page and "0.400" in page


def test_a_one_question_set_skips_tuning_with_a_reason_not_a_key_error(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "What is the capital of Land 0?", "answers": ["Zembla"]}))
    lines: list[str] = []
    choice = Choice(qa, tmp_path / "out", say=lines.append)
    parts = choice.split(choice.qa)
    assert (len(parts.dev), len(parts.test)) == (0, 1)
    settings = choice.tune(parts, choice.kb)  # was: KeyError 'score' from a dev run with no questions
    tune = choice.state["tune"]
    assert tune["dev_questions"] == 0 and tune["trials"] == [] and "configured settings are used" in tune["why"]
    assert settings.retrieval.k == choice.settings.retrieval.k


def test_a_tie_keeps_the_configured_template_and_a_better_one_wins():
    trial = {"k": 3, "context_sentences": 3, "min_relevance": 0.25, "score": 0.5, "reach": 0.8}
    tied = [{**trial, "template": "sandwich"}, {**trial, "template": "plain"}]
    assert best_trial(tied, 0.25, "plain")["template"] == "plain"
    assert best_trial(tied, 0.25, "sandwich")["template"] == "sandwich"
    better = [{**trial, "template": "fenced"}, {**trial, "template": "sandwich", "score": 0.6}]
    assert best_trial(better, 0.25, "fenced")["template"] == "sandwich"
