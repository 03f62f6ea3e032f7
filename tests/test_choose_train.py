"""The team's training data in `ragtune choose`: with --train every question is asked, a cap is said aloud and
--train-all lifts it, and rows without the task's instruction are trained in the contestant's exact prompt."""

from __future__ import annotations

import json

from ragtune.choose import Choice
from ragtune.choose.train import budget, cap_note, capped, train_or_restart, with_instruction
from ragtune.config import FinetuneSettings, Settings
from ragtune.finetune.train import FineTuner
from ragtune.rag import RAG
from ragtune.types import Example


def _apibench(folder, n=30):
    folder.mkdir()
    rows = [{"code": f"###Instruction: load model number {i}\n###Output: x",
             "api_call": f"hub.load('https://hub.example/m{i}')", "provider": "Example Hub"} for i in range(n)]
    (folder / "api_docs.jsonl").write_text("\n".join(json.dumps({"api_name": f"m{i}", "api_call": r["api_call"]})
                                                     for i, r in enumerate(rows)))
    (folder / "eval.jsonl").write_text("\n".join(map(json.dumps, rows)))
    return folder


def _train(path, n):
    rows = [{"question": f"Load the model called number {i}.", "answer": f"hub.load('https://hub.example/t{i}')"}
            for i in range(n)]
    rows.append({"messages": [{"role": "system", "content": "Own rule."}, {"role": "user", "content": "q?"},
                              {"role": "assistant", "content": "a"}]})
    path.write_text("\n".join(map(json.dumps, rows)))
    return path


def test_with_train_every_question_is_asked_and_rows_get_the_contestants_exact_prompt(tmp_path):
    folder = _apibench(tmp_path / "hub")
    choice = Choice(folder, tmp_path / "out", train=_train(tmp_path / "train.jsonl", 5), say=lambda line: None)
    assert choice.qa.system and {it.metadata["split"] for it in choice.qa.items} == {"train", "validation", "test"}
    parts = choice.split(choice.qa)
    assert len(parts.dev) + len(parts.test) == 30 and not parts.train  # the declared train split is not used
    examples = choice.train_examples
    assert examples is not None
    for e in examples[:5]:  # byte for byte what the fine-tuned contestant is asked (closed-book, with the task's
        question = e.messages[1]["content"]  # instruction), then the answer
        assert e.messages[:-1] == RAG(None, instruction=choice.qa.system).prepare(question).messages
        assert e.messages[0]["content"] == choice.qa.system.strip()
    assert examples[5].messages[0]["content"] == "Own rule."  # a row's own system message is kept
    # without --train, the folder's split holds: its test part only
    declared = Choice(folder, tmp_path / "out2", say=lambda line: None).split(Choice(folder, tmp_path / "o3").qa)
    assert len(declared.test) < 30 and declared.train


def test_a_capped_training_set_is_said_and_train_all_uses_every_row(tmp_path):
    folder = _apibench(tmp_path / "hub")
    train = _train(tmp_path / "train.jsonl", 9)
    lines: list[str] = []
    choice = Choice(folder, tmp_path / "out", train=train, say=lines.append,
                    overrides={"choose.max_train_examples": 4})
    chosen = choice.train_data(choice.split(choice.qa), choice.kb)
    assert len(chosen) == 4 and choice.state["train_data"]["available"] == 10
    assert any("training on 4 of 10 rows" in line and "--train-all" in line for line in lines), lines
    every = Choice(folder, tmp_path / "all", train=train, say=lines.append, train_all=True,
                   overrides={"choose.max_train_examples": 4})
    assert len(every.train_data(every.split(every.qa), every.kb)) == 10
    assert Settings(choose={"max_train_examples": 0}).choose.max_train_examples == 0


def test_by_default_every_row_the_team_gave_is_trained_and_only_synthetic_pairs_are_capped(tmp_path):
    folder = _apibench(tmp_path / "hub")
    train = _train(tmp_path / "synthetic.jsonl", 299)  # a team's file, whatever its name says
    lines: list[str] = []
    choice = Choice(folder, tmp_path / "out", train=train, say=lines.append)
    chosen = choice.train_data(choice.split(choice.qa), choice.kb)
    assert len(chosen) == 300 and choice.state["train_data"]["available"] == 300
    assert choice.state["train_data"]["synthetic"] is False
    assert not any("training on" in line for line in lines), lines
    defaults = Settings().choose
    assert budget(defaults, synthetic=False) == (0, "choose.max_train_examples")
    assert budget(defaults, synthetic=True) == (256, "choose.max_synthetic_examples")
    lifted = Choice(folder, tmp_path / "all", train=train, train_all=True).settings.choose
    assert (lifted.max_train_examples, lifted.max_synthetic_examples) == (0, 0)
    assert "(choose.max_synthetic_examples, a time budget)" in (cap_note(256, 900, setting=budget(defaults, True)[1])
                                                                 or "")


def test_capping_is_a_seeded_sample_in_order_and_zero_means_every_row():
    rows = [Example(messages=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}])
            for i in range(10)]
    assert capped(rows, 0, 0) == rows and capped(rows, 20, 0) == rows
    four = capped(rows, 4, 0)
    assert len(four) == 4 and four == capped(rows, 4, 0) and four == sorted(four, key=rows.index)
    assert cap_note(10, 10) is None and "all 30 would take about 3.0x" in (cap_note(10, 30) or "")
    assert "about 5 min" in (cap_note(10, 30, 300.0) or "")
    assert with_instruction(rows, None) == rows and with_instruction(rows, "  ") == rows


def test_the_report_says_the_training_data_was_cut_and_how_to_use_it_all():
    from ragtune.evaluate.report import _choice

    results = {"choose": {"split": {"dev": 8, "test": 80}, "train_data": {"origin": "t.jsonl", "examples": 256,
                                                                         "available": 837}}}
    page = "".join(_choice(results))
    assert "a seeded sample of 837" in page and "3.3x the training time" in page and "--train-all" in page


def test_a_stage_whose_checkpoints_hold_other_data_trains_from_the_start_and_says_so(tiny_lm_dir, tmp_path,
                                                                                      monkeypatch):
    # a bake-off whose inputs did not change, resumed by a ragtune that builds a stage's prompts differently:
    # the stage cannot resume those checkpoints, and the bake-off must not stop with its other stages done
    def rows(word):
        return [Example(messages=[{"role": "user", "content": f"colour of item {i}?"},
                                  {"role": "assistant", "content": f"{word} {i}"}]) for i in range(24)]

    settings = FinetuneSettings(batch_size=4, max_seq_tokens=48, eval_every=2, save_every=2, patience=0,
                                min_steps=0, max_steps=6, precision="fp32")
    folder = tmp_path / "raft"

    def interrupted(self, run):
        raise KeyboardInterrupt  # killed before the stage wrote its model: checkpoints only

    with monkeypatch.context() as m:
        m.setattr(FineTuner, "save", interrupted)
        try:
            FineTuner(str(tiny_lm_dir), settings=settings).fit(rows("red"), None, folder)
        except KeyboardInterrupt:
            pass
    assert (folder / "checkpoints").is_dir() and not (folder / "training_report.json").exists()
    said: list[str] = []
    report = train_or_restart(folder, rows("blue"), str(tiny_lm_dir), settings, said.append)
    assert len(said) == 1 and "other training data" in said[0] and "from the start" in said[0]
    assert report["steps"] == 6 and report["history"][0]["step"] == 1
    assert (folder / "training_report.json").is_file() and not (folder / "checkpoints").exists()
