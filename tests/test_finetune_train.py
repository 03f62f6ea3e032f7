"""The training loop on a tiny random model: masking, learning, outputs, round trip, early stopping, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from ragtune.finetune.encode import IGNORE, encode_chat
from ragtune.finetune.train import FineTuner, interval_loss

COLOURS = ["red", "blue", "green", "amber"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny matrices: one thread is fastest


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    """A learnable task: the answer is a function of the item number."""
    folder = tmp_path_factory.mktemp("colours")
    rows = [{"question": f"colour of item {i}?", "answer": COLOURS[i % 4]} for i in range(48)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:40]) + "\n")
    (folder / "val.jsonl").write_text("\n".join(json.dumps(r) for r in rows[40:]) + "\n")
    return folder


def _tuner(model, **kw):
    base = dict(batch_size=4, max_seq_tokens=48, learning_rate=5e-3, eval_every=4, save_every=4, patience=0,
                seed=0, epochs=1.0, warmup_fraction=0.0, min_steps=0, precision="fp32")
    return FineTuner(str(model), **{**base, **kw})


def _assert_same_adapter(a: dict, b: dict, rtol: float, atol: float) -> None:
    """Equal LoRA weights: the same non-empty set of A and B matrices (2 layers x 7 projections), each close."""
    assert a.keys() == b.keys() and len([k for k in a if "lora_B" in k]) == 14, sorted(a)[:4]
    assert any(b[k].abs().max() > 0 for k in b if "lora_B" in k)  # trained: B starts at zero
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol)


def test_loss_only_on_answer_tokens(tiny_lm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm_dir)
    msgs = [{"role": "user", "content": "what colour is the sky?"}, {"role": "assistant", "content": "blue"}]
    enc = encode_chat(tok, msgs, 64)
    prompt = tok(tok.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True),
                 add_special_tokens=False)["input_ids"]
    assert enc.input_ids[:len(prompt)] == prompt
    assert enc.labels[:len(prompt)] == [IGNORE] * len(prompt)
    answer = [t for t in enc.labels if t != IGNORE]
    assert tok.decode(answer).replace(" ", "").startswith("blue[SEP]")
    assert encode_chat(tok, msgs, 64, loss_on="all").labels == enc.input_ids
    assert encode_chat(tok, msgs, 5).truncated


def test_training_learns_and_writes_a_loadable_adapter(tiny_lm_dir, colour_data, tmp_path):
    from ragtune.models.loading import load_model_and_tokenizer

    out = tmp_path / "run"
    result = _tuner(tiny_lm_dir, epochs=3.0, learning_rate=1e-2).fit(
        colour_data / "train.jsonl", colour_data / "val.jsonl", out)
    evals = result.report["evaluations"]
    assert result.steps == 30 and [e["step"] for e in evals] == [4, 8, 12, 16, 20, 24, 28, 30]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.3  # a random model learns the colour answers
    assert result.best_val_loss == min(e["val_loss"] for e in evals)
    # each evaluation's train loss is the loss the optimizer saw since the evaluation before, per answer token
    hist = result.report["history"]
    steps_8 = [h for h in hist if 4 < h["step"] <= 8]
    assert evals[1]["train_loss"] == pytest.approx(
        sum(h["loss"] * h["answer_tokens"] for h in steps_8) / sum(h["answer_tokens"] for h in steps_8))
    assert evals[-1]["train_loss"] < evals[0]["train_loss"]
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer_config.json", "model_card.md",
                 "training_report.json", "loss.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_lm_dir.resolve())
    report = json.loads((out / "training_report.json").read_text())
    assert report["best"]["step"] == result.best_step and report["generalisation_gap"] is not None
    card = (out / "model_card.md").read_text()
    assert report["data"]["hash"] in card and "learning_rate: 0.01" in card

    # round trip: the adapter folder, loaded through ragtune's loader, gives the trained model's exact logits
    model, tok = load_model_and_tokenizer(str(out))
    base, _ = load_model_and_tokenizer(str(tiny_lm_dir))
    ids = torch.tensor([tok("colour of item 41?", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        loaded = model(input_ids=ids).logits
        assert torch.equal(loaded, result.model(input_ids=ids).logits)
        assert not torch.allclose(loaded, base(input_ids=ids).logits, atol=1e-4)


def test_full_fine_tuning_writes_a_plain_model_folder(tiny_lm_dir, colour_data, tmp_path):
    from ragtune.models.loading import load_model_and_tokenizer, resolve_model

    result = _tuner(tiny_lm_dir, method="full", max_steps=2).fit(colour_data / "train.jsonl",
                                                                 colour_data / "val.jsonl", tmp_path / "full")
    assert (tmp_path / "full" / "model.safetensors").is_file()
    assert not (tmp_path / "full" / "adapter_config.json").exists()
    assert resolve_model(str(tmp_path / "full")).kind == "hf"
    model, tok = load_model_and_tokenizer(str(tmp_path / "full"))
    ids = torch.tensor([tok("colour of item 3?", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, result.model(input_ids=ids).logits)


def test_unknown_setting_is_a_config_error(tiny_lm_dir):
    from ragtune.errors import ConfigError

    with pytest.raises(ConfigError, match="lora_rank"):
        FineTuner(str(tiny_lm_dir), lora_rank=8)


def test_early_stopping_keeps_the_best_checkpoint(tiny_lm_dir, colour_data, tmp_path):
    # min_delta so large that no evaluation after the first counts as better: stop after `patience` more
    result = _tuner(tiny_lm_dir, epochs=10.0, eval_every=2, patience=2, min_delta=100.0).fit(
        colour_data / "train.jsonl", colour_data / "val.jsonl", tmp_path / "run")
    assert result.stopped_early and result.steps == 6 and result.best_step == 2
    assert [e["step"] for e in result.report["evaluations"]] == [2, 4, 6]


def test_same_seed_same_weights_and_checkpoint_refuses_overwrite(tiny_lm_dir, colour_data, tmp_path):
    a = _tuner(tiny_lm_dir, max_steps=3).fit(colour_data / "train.jsonl", colour_data / "val.jsonl", tmp_path / "a")
    b = _tuner(tiny_lm_dir, max_steps=3).fit(colour_data / "train.jsonl", colour_data / "val.jsonl", tmp_path / "b")
    wa, wb = (load_file(str(r.out_dir / "adapter_model.safetensors")) for r in (a, b))
    _assert_same_adapter(wa, wb, rtol=0, atol=0)
    (tmp_path / "c" / "checkpoints" / "step-4").mkdir(parents=True)
    (tmp_path / "c" / "checkpoints" / "step-4" / "state.json").write_text("{}")
    from ragtune.errors import InputError

    with pytest.raises(InputError, match="--resume"):
        _tuner(tiny_lm_dir).fit(colour_data / "train.jsonl", colour_data / "val.jsonl", tmp_path / "c")


def test_resume_after_sigkill_matches_an_uninterrupted_run(tiny_lm_dir, colour_data, tmp_path):
    flags = ["--model", str(tiny_lm_dir), "--validation", str(colour_data / "val.jsonl"), "--batch-size", "4",
             "--max-seq-tokens", "48", "--lr", "5e-3", "--eval-every", "4", "--save-every", "4", "--patience", "0",
             "--seed", "0", "--epochs", "2"]
    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "RAGTUNE_FINETUNE__MIN_STEPS": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "ragtune.cli.main", "finetune", str(colour_data / "train.jsonl"),
                             "--out", str(killed), *flags], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (killed / "checkpoints" / "step-8" / "state.json").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "adapter_model.safetensors").exists()

    kw = dict(warmup_fraction=0.05, epochs=2.0, precision="auto")  # the CLI run used the defaults for these
    resumed = _tuner(tiny_lm_dir, **kw).fit(colour_data / "train.jsonl", colour_data / "val.jsonl", killed,
                                            resume=True)
    straight = _tuner(tiny_lm_dir, **kw).fit(colour_data / "train.jsonl", colour_data / "val.jsonl",
                                             tmp_path / "straight")
    assert resumed.steps == straight.steps == 20
    assert resumed.report["history"][0]["step"] == 1  # the history before the kill was restored too
    wr, ws = (load_file(str(r.out_dir / "adapter_model.safetensors")) for r in (resumed, straight))
    _assert_same_adapter(wr, ws, rtol=1e-4, atol=1e-6)
    assert resumed.best_val_loss == pytest.approx(straight.best_val_loss, rel=1e-5)


def test_gradient_accumulation_matches_a_larger_batch(tiny_lm_dir, colour_data, tmp_path):
    runs = [_tuner(tiny_lm_dir, max_steps=3, lora_dropout=0.0, **kw).fit(
        colour_data / "train.jsonl", colour_data / "val.jsonl", tmp_path / name)
        for name, kw in (("big", dict(batch_size=4)), ("accum", dict(batch_size=2, gradient_accumulation=2)))]
    big, accum = (load_file(str(r.out_dir / "adapter_model.safetensors")) for r in runs)
    _assert_same_adapter(accum, big, rtol=1e-4, atol=1e-6)


def test_raw_documents_train_as_continued_pretraining(tiny_lm_dir, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"d{i}.md").write_text(f"# Note {i}\n\nThe Zorblat kettle model {i} boils water in {90 + i} seconds.")
    result = _tuner(tiny_lm_dir, max_steps=2, batch_size=2, max_seq_tokens=16).fit(docs, out=tmp_path / "cpt")
    data = result.report["data"]
    assert data["train_examples"] + data["validation_examples"] == 6 and data["validation_examples"] == 1
    assert result.report["evaluations"] and (tmp_path / "cpt" / "adapter_model.safetensors").is_file()


def test_interval_loss_weighs_the_steps_since_the_last_evaluation_by_their_answer_tokens():
    hist = [{"step": 1, "loss": 9.0, "answer_tokens": 5}, {"step": 2, "loss": 1.0, "answer_tokens": 30},
            {"step": 3, "loss": 2.0, "answer_tokens": 10}]
    assert interval_loss(hist, since=1) == pytest.approx((1.0 * 30 + 2.0 * 10) / 40)
    assert interval_loss(hist, since=0) == pytest.approx((9.0 * 5 + 30 + 20) / 45)
    old = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 1.0}]  # a checkpoint from before answer_tokens was kept
    assert interval_loss(old, since=0) == pytest.approx(2.0)


def test_report_flags_overfitting_and_the_gap():
    from ragtune.finetune.report import build_report

    evals = [{"step": 10, "val_loss": 1.0, "train_loss": 0.9}, {"step": 20, "val_loss": 1.4, "train_loss": 0.3}]
    rep = build_report([], evals, {}, overfit_ratio=1.25, best_step=10)
    assert rep["overfitting"] and rep["best"]["step"] == 10
    assert rep["generalisation_gap"] == pytest.approx(0.1)
    healthy = build_report([], evals[:1], {}, overfit_ratio=1.25, best_step=10)
    assert not healthy["overfitting"] and healthy["warnings"] == []
    wide = build_report([], [{"step": 5, "val_loss": 2.0, "train_loss": 0.5}], {}, 1.25, 5)
    assert any(w.startswith("generalisation gap") for w in wide["warnings"])


def test_plan_gives_a_small_data_set_enough_steps():
    from ragtune.config import FinetuneSettings
    from ragtune.finetune.train import plan_run

    s = FinetuneSettings()
    small = plan_run(22, s, world=1)  # 3 steps an epoch: the floor, not 3 epochs x 3 steps
    assert small.total == s.min_steps and small.eval_every == -(-s.min_steps // 10) and small.learning_rate == 1e-3
    big = plan_run(550, s, world=1)  # epochs decide once they give more steps than the floor
    assert big.steps_per_epoch == 69 and big.total == 207 and big.eval_every == 21
    assert plan_run(22, s.model_copy(update={"max_steps": 5}), 1).total == 5  # max_steps wins
    assert plan_run(22, s.model_copy(update={"method": "full"}), 1).learning_rate == 5e-5
    assert plan_run(22, s.model_copy(update={"learning_rate": 3e-4, "eval_every": 7}), 1).learning_rate == 3e-4
