"""Training throughput and peak memory: ragtune's loop vs a plain TRL SFTTrainer + peft run.

    python bench/finetune_vs_trl.py [--steps 12] [--model smollm2]

Same model (loaded through ragtune.models.loading, fp32), same data (the TF Hub APIBench train split,
seed 0), same LoRA (r 16, alpha 32, dropout 0.05, the same target modules), lr 1e-3, batch 8, max
length 128, loss on the answer tokens only, fp32 without gradient checkpointing on both sides (TRL's bf16
and checkpointing defaults turned off), no evaluation and no checkpoints during the timed steps.
Each side runs in its own subprocess so peak RSS (ru_maxrss) is its own.
tokens/s = non-padding tokens of the trained examples / wall time of the training steps.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tfhub-apibench"
LR, BATCH, MAX_LEN, R, ALPHA, DROPOUT = 1e-3, 8, 128, 16, 32, 0.05


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(model: str, steps: int, out: Path) -> dict:
    from ragtune.finetune import finetune
    from ragtune.finetune.apibench import load_apibench

    train = load_apibench(DATA)["train"]
    r = finetune(train, model=model, out=out, validation=[], max_steps=steps, learning_rate=LR, batch_size=BATCH,
                 max_seq_tokens=MAX_LEN, lora_r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT, eval_every=10 ** 6,
                 save_every=10 ** 6, warmup_fraction=0.0)
    return {"tokens": r.report["tokens"], "seconds": r.report["seconds"], "steps": r.steps,
            "final_loss": r.final_train_loss}


def run_trl(model_spec: str, steps: int, out: Path) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from ragtune.finetune.apibench import load_apibench
    from ragtune.finetune.base import lora_targets
    from ragtune.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_spec, dtype="float32")
    model.train()
    rows = [{"prompt": e.messages[:-1], "completion": e.messages[-1:]} for e in load_apibench(DATA)["train"]]
    config = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
                       max_length=MAX_LEN, lr_scheduler_type="linear", warmup_steps=0, logging_steps=1,
                       save_strategy="no", eval_strategy="no", report_to=[], seed=0, use_cpu=True,
                       dataloader_num_workers=0, packing=False, completion_only_loss=True,
                       # TRL 1.x defaults to bf16 autocast and gradient checkpointing; ours is plain fp32 without
                       # checkpointing, and bf16 on a CPU without bf16 instructions is emulated (very slow)
                       bf16=False, gradient_checkpointing=False)
    peft_config = LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules=lora_targets(model, None),
                             task_type="CAUSAL_LM", bias="none")

    class Clock(TrainerCallback):  # time the steps only, as our loop's report does
        start = end = 0.0

        def on_train_begin(self, *a, **k):
            Clock.start = time.perf_counter()

        def on_train_end(self, *a, **k):
            Clock.end = time.perf_counter()

    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft_config, callbacks=[Clock()])
    trainer.train()
    logs = [h for h in trainer.state.log_history if "num_tokens" in h]
    return {"tokens": logs[-1]["num_tokens"], "seconds": Clock.end - Clock.start, "steps": trainer.state.global_step,
            "final_loss": logs[-1].get("loss")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--one", choices=["ours", "trl"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        with tempfile.TemporaryDirectory() as tmp:
            result = (run_ours if args.one == "ours" else run_trl)(args.model, args.steps, Path(tmp) / "out")
        result["peak_rss_mb"] = peak_rss_mb()
        print("RESULT " + json.dumps(result))
        return
    results = {}
    for side in ("trl", "ours"):
        load_before = os.getloadavg()[0]
        proc = subprocess.run([sys.executable, __file__, "--one", side, "--steps", str(args.steps), "--model",
                               args.model, "--threads", str(args.threads)], capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.exit(f"{side} run failed:\n{proc.stderr[-3000:]}")
        results[side] = json.loads(line[-1][len("RESULT "):])
        results[side]["load_after"] = os.getloadavg()[0]
        results[side]["load_before"] = load_before
        print(side, results[side], file=sys.stderr)
    from _report import append_section

    tps = {k: v["tokens"] / v["seconds"] for k, v in results.items()}
    body = f"""
{args.steps} optimizer steps each on the TF Hub APIBench train split, model `{args.model}` (fp32 on both sides — TRL's bf16
and gradient-checkpointing defaults turned off — CPU), LoRA r {R} /
alpha {ALPHA} / dropout {DROPOUT} on the same modules, lr {LR}, batch {BATCH}, max length {MAX_LEN}, loss on answer
tokens only, {args.threads or 'default'} torch thread(s). Tokens = non-padding tokens trained on; time = the
training steps only (model loading excluded); memory = peak RSS of the process (model load included).

| loop | steps | tokens | seconds | tokens/s | peak RSS MB | final loss |
|---|---|---|---|---|---|---|
| TRL SFTTrainer + peft (baseline) | {results['trl']['steps']} | {results['trl']['tokens']:.0f} | {results['trl']['seconds']:.1f} | {tps['trl']:.0f} | {results['trl']['peak_rss_mb']:.0f} | {results['trl']['final_loss']} |
| ragtune finetune | {results['ours']['steps']} | {results['ours']['tokens']:.0f} | {results['ours']['seconds']:.1f} | {tps['ours']:.0f} | {results['ours']['peak_rss_mb']:.0f} | {results['ours']['final_loss']:.4f} |

Throughput ratio ragtune / TRL: **{tps['ours'] / tps['trl']:.2f}×**; peak memory ratio:
{results['ours']['peak_rss_mb'] / results['trl']['peak_rss_mb']:.2f}×. (Shared 2-core machine: other jobs were
running; both sides ran back to back. 1-minute load average before/after: TRL {results['trl']['load_before']:.1f} /
{results['trl']['load_after']:.1f}, ragtune {results['ours']['load_before']:.1f} / {results['ours']['load_after']:.1f}.)
"""
    append_section("Fine-tuning throughput: ragtune loop vs TRL SFTTrainer", body)


if __name__ == "__main__":
    main()
