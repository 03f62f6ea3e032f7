"""Training throughput and validation loss: ragtune's loop vs a plain transformers + peft loop vs TRL SFTTrainer.

    flock /tmp/ragtune-bench.lock python bench/finetune_vs_trl.py [--steps 12] [--rounds 2] [--model smollm2]

Same model (loaded through ragtune.models.loading, fp32 weights), same data (the TF Hub APIBench train split,
seed 0, the first steps x batch examples; round r shuffles them and initialises LoRA with seed r, alike for every
loop), same LoRA (r 16, alpha 32, ragtune's
default dropout, the same target modules), AdamW lr 1e-3 with linear decay and no warm-up, batch 8, max length 128, loss
on the answer tokens only, no gradient checkpointing, no evaluation or checkpoints during the timed steps.
Each loop runs in its own subprocess (peak RSS is its own); rounds are interleaved (peft, TRL, ragtune,
peft, ...) and the best round of each is kept. tokens/s = non-padding tokens of the trained examples / wall
time of the training steps. Validation loss: mean loss per answer token on the first 48 validation examples,
scored by the same function (ragtune.finetune.batches.mean_loss, fp32) for all three.
Each loop keeps its own precision default on this CPU: the plain loop fp32, TRL its default bf16
autocast, ragtune `precision = "auto"` (bf16 autocast where the CPU has bf16 instructions).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tfhub-apibench"
LR, BATCH, MAX_LEN, R, ALPHA, N_VAL = 1e-3, 8, 128, 16, 32, 48
SIDES = ("peft", "trl", "ragtune")


def dropout() -> float:
    """ragtune's default LoRA dropout, used by every loop (the same hyper-parameters for all three)."""
    from ragtune.config import FinetuneSettings

    return FinetuneSettings().lora_dropout


def splits(steps: int):
    from ragtune.evaluate.apibench import load_apibench

    data = load_apibench(DATA)
    return data["train"][:steps * BATCH], data["validation"][:N_VAL]


def val_loss(model, tokenizer, val) -> float:
    """The product's scorer (mean loss per answer token), in fp32, for every loop's trained model."""
    from accelerate import Accelerator

    from ragtune.finetune.batches import mean_loss
    from ragtune.finetune.encode import encode_examples, ensure_chat_template

    ensure_chat_template(tokenizer)
    enc, _ = encode_examples(tokenizer, val, MAX_LEN)
    model.config.use_cache = False
    return mean_loss(model, enc, tokenizer.pad_token_id, Accelerator(cpu=True), BATCH, bf16=False)


def run_ragtune(model: str, steps: int, out: Path, seed: int) -> dict:
    from ragtune.finetune import finetune

    train, val = splits(steps)
    r = finetune(train, model=model, out=out, validation=[], max_steps=steps, min_steps=0, learning_rate=LR,
                 batch_size=BATCH, max_seq_tokens=MAX_LEN, lora_r=R, lora_alpha=ALPHA, lora_dropout=dropout(),
                 eval_every=10 ** 6, save_every=10 ** 6, warmup_fraction=0.0, epochs=1.0, seed=seed)
    return {"tokens": r.report["tokens"], "seconds": r.report["seconds"], "steps": r.steps,
            "val_loss": val_loss(r.model, r.tokenizer, val), "precision": r.report["precision"]}


def _lora(model):
    from peft import LoraConfig, get_peft_model

    from ragtune.finetune.base import lora_targets

    return LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=dropout(), target_modules=lora_targets(model, None),
                      task_type="CAUSAL_LM", bias="none"), get_peft_model


def run_peft(model_spec: str, steps: int, out: Path, seed: int) -> dict:
    """The loop a user writes from the peft docs: right-padded batches, labels -100 on prompt and padding."""
    import torch

    from ragtune.finetune.encode import IGNORE, encode_examples, ensure_chat_template
    from ragtune.models.loading import load_model_and_tokenizer

    torch.manual_seed(seed)
    model, tok = load_model_and_tokenizer(model_spec, dtype="float32")
    ensure_chat_template(tok)
    config, get_peft_model = _lora(model)
    model = get_peft_model(model, config)
    model.train()
    train, val = splits(steps)
    enc, _ = encode_examples(tok, train, MAX_LEN)
    random.Random(seed).shuffle(enc)  # a seeded order, as the Trainer's sampler and ragtune's loop take
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, (steps - s) / steps))
    tokens, start = 0, time.perf_counter()
    for step in range(steps):
        part = enc[step * BATCH:(step + 1) * BATCH]
        width = max(len(e.input_ids) for e in part)
        ids = torch.tensor([e.input_ids + [tok.pad_token_id] * (width - len(e.input_ids)) for e in part])
        labels = torch.tensor([e.labels + [IGNORE] * (width - len(e.labels)) for e in part])
        mask = torch.tensor([[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in part])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        tokens += sum(len(e.input_ids) for e in part)
    seconds = time.perf_counter() - start
    model.eval()
    return {"tokens": tokens, "seconds": seconds, "steps": steps, "val_loss": val_loss(model, tok, val),
            "precision": "fp32"}


def run_trl(model_spec: str, steps: int, out: Path, seed: int) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from ragtune.models.loading import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(model_spec, dtype="float32")
    train, val = splits(steps)
    rows = [{"prompt": e.messages[:-1], "completion": e.messages[-1:]} for e in train]
    config = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=BATCH, learning_rate=LR,
                       max_length=MAX_LEN, lr_scheduler_type="linear", warmup_steps=0, logging_steps=1,
                       save_strategy="no", eval_strategy="no", report_to=[], seed=seed, use_cpu=True,
                       dataloader_num_workers=0, packing=False, completion_only_loss=True, max_grad_norm=1.0,
                       weight_decay=0.0, gradient_checkpointing=False)  # bf16: TRL's default
    peft_config, _ = _lora(model)

    class Clock(TrainerCallback):  # time the steps only, as the other loops do
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
            "val_loss": val_loss(trainer.model.eval(), tokenizer, val),
            "precision": "bf16 autocast" if config.bf16 else "fp32"}


def one(side: str, args) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = {"peft": run_peft, "trl": run_trl, "ragtune": run_ragtune}[side]
        result = run(args.model, args.steps, Path(tmp) / "out", args.seed)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--one", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args.one, args)
    best: dict[str, dict] = {}
    losses: dict[str, list[float]] = {}  # validation loss per round (seed), per loop
    loads = [os.getloadavg()[0]]
    for rnd in range(args.rounds):
        for side in SIDES:
            proc = subprocess.run([sys.executable, __file__, "--one", side, "--steps", str(args.steps), "--model",
                                   args.model, "--seed", str(rnd)], capture_output=True, text=True)
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                sys.exit(f"{side} run failed:\n{proc.stderr[-3000:]}")
            r = json.loads(line[-1][len("RESULT "):])
            r["tps"] = r["tokens"] / r["seconds"]
            print(rnd, side, r, file=sys.stderr, flush=True)
            losses.setdefault(side, []).append(r["val_loss"])
            if side not in best or r["tps"] > best[side]["tps"]:
                best[side] = r
            loads.append(os.getloadavg()[0])
    report(best, losses, args, loads)


def report(best: dict[str, dict], losses: dict[str, list[float]], args, loads: list[float]) -> None:
    from _report import append_section

    names = {"peft": "plain transformers + peft loop (baseline)", "trl": "TRL SFTTrainer + peft (baseline)",
             "ragtune": "ragtune finetune"}
    rows = "\n".join(f"| {names[s]} | {r['precision']} | {r['steps']} | {r['tokens']:.0f} | {r['seconds']:.1f} | "
                     f"{r['tps']:.0f} | {sum(losses[s]) / len(losses[s]):.4f} ({', '.join(f'{v:.3f}' for v in losses[s])}) | "
                     f"{r['peak_rss_mb']:.0f} |" for s, r in best.items())
    ours = best["ragtune"]
    body = f"""
{args.steps} optimizer steps per loop on the first {args.steps * BATCH} TF Hub APIBench train examples (seed-0
split), model `{args.model}`, LoRA r {R} / alpha {ALPHA} / dropout {dropout()} on the same modules, AdamW lr {LR}
linear decay, batch {BATCH}, max length {MAX_LEN}, loss on answer tokens only; {args.rounds} interleaved rounds,
round r with seed r (LoRA initialisation and example order) for every loop; tokens/s: the best round.
Validation loss = mean loss per answer token on {N_VAL} validation examples, one scorer for all: the mean over
the rounds (each round's value in brackets; the seed moves it by a few hundredths, so compare means).

| loop | precision | steps | tokens | seconds | tokens/s | validation loss, mean (per seed) | peak RSS MB |
|---|---|---|---|---|---|---|---|
{rows}

ragtune / plain peft loop: **{ours['tps'] / best['peft']['tps']:.2f}x** tokens/s; ragtune / TRL:
**{ours['tps'] / best['trl']['tps']:.2f}x**. 1-minute load average during the run, its own 2 threads included:
{min(loads):.1f}-{max(loads):.1f} on 2 cores; read the ratios.
"""
    append_section("Fine-tuning throughput: ragtune vs a plain peft loop vs TRL SFTTrainer", body)


if __name__ == "__main__":
    main()
