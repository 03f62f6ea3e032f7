"""Two processes (torchrun, gloo on CPU) train the same model as one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ragtune.finetune.train import FineTuner


@pytest.mark.integration
def test_two_process_gloo_run_matches_one_process(tiny_lm_dir, tmp_path):
    rows = [{"question": f"colour of item {i}?", "answer": ["red", "blue", "green"][i % 3]} for i in range(30)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:24]) + "\n")
    (tmp_path / "val.jsonl").write_text("\n".join(json.dumps(r) for r in rows[24:]) + "\n")
    torchrun = Path(sys.executable).with_name("torchrun")
    assert torchrun.exists() or shutil.which("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "RAGTUNE_FINETUNE__LORA_DROPOUT": "0",  # no dropout: both runs then see identical computations
           "RAGTUNE_FINETUNE__PRECISION": "fp32"}  # bf16 rounding would differ between the packings
    common = ["--validation", str(tmp_path / "val.jsonl"), "--model", str(tiny_lm_dir), "--max-steps", "4",
              "--eval-every", "2", "--save-every", "2", "--lr", "1e-2", "--seed", "0"]
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "ragtune.cli.main",
                           "finetune", str(tmp_path / "train.jsonl"), "--out", str(tmp_path / "ddp"),
                           "--batch-size", "2", *common], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "ddp" / "training_report.json").read_text())
    assert report["processes"] == 2 and report["steps"] == 4

    torch.set_num_threads(1)
    single = FineTuner(str(tiny_lm_dir), batch_size=4, max_steps=4, eval_every=2, save_every=2, learning_rate=1e-2,
                       seed=0, lora_dropout=0.0, precision="fp32").fit(tmp_path / "train.jsonl", tmp_path / "val.jsonl",
                                                     tmp_path / "single")
    assert single.report["processes"] == 1
    two = load_file(str(tmp_path / "ddp" / "adapter_model.safetensors"))
    one = load_file(str(tmp_path / "single" / "adapter_model.safetensors"))
    assert two.keys() == one.keys()
    for key in one:  # gradients all-reduced over 2 processes = one process on the whole batch
        torch.testing.assert_close(two[key], one[key], rtol=1e-3, atol=1e-5)
    assert [e["val_loss"] for e in report["evaluations"]] == pytest.approx(
        [e["val_loss"] for e in single.report["evaluations"]], rel=1e-4)
