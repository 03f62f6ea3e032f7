"""What the evaluations cost a training run: today's (the validation pass; the train loss is the one the optimizer
saw since the evaluation before) against the train-probe evaluation used before session 14 (a second forward
pass, over as many training examples as validation has), on `ragtune finetune --kb KB --raft`'s default run.

    python bench/eval_cost.py [--kb-docs bench/reader_data/heldout/cobalt-kitchen] [--rounds 2]

The RAFT prompts are built once by the command's own data step (`raft_kb.kb_raft_data`); each round then trains
them with both trainers, interleaved, same seed and settings as the command. The baseline is today's trainer with
the probe pass put back (`ProbeTuner`, the removed code), nothing else changed. Reported: the wall time of
`fit` (best of the rounds), the validation losses (the same in both: the probe moves no weight) and the largest
difference between the two adapters.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402
from ragtune.config import load_settings  # noqa: E402
from ragtune.finetune.batches import mean_loss  # noqa: E402
from ragtune.finetune.raft import epochs as raft_epochs  # noqa: E402
from ragtune.finetune.raft_kb import kb_raft_data  # noqa: E402
from ragtune.finetune.train import FineTuner  # noqa: E402
from ragtune.index.knowledge_base import KnowledgeBase  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "eval_cost"


class ProbeTuner(FineTuner):
    """Before session 14: each evaluation also scored a fixed sample of training examples (as many as validation
    has, at most ``eval_max_examples``) and recorded that as the train loss."""

    def _evaluate(self, run) -> None:
        super()._evaluate(run)
        s = self.settings
        if not hasattr(run, "probe"):
            idx = list(range(len(run.data.train_enc)))
            random.Random(s.seed + 7).shuffle(idx)
            n = min(len(run.data.val_enc) or 32, s.eval_max_examples)
            run.probe = [run.data.train_enc[i] for i in sorted(idx[:n])]
        run.state.evals[-1]["train_loss"] = mean_loss(run.model, run.probe, run.tokenizer.pad_token_id,
                                                      run.accelerator, s.batch_size, run.bf16, run.budget)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kb-docs", type=Path, default=REPO / "bench" / "reader_data" / "heldout" / "cobalt-kitchen")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    settings = load_settings()
    kb = RUNS / "kb" / args.kb_docs.name
    KnowledgeBase(kb, settings=settings).add([args.kb_docs], progress=False)
    data = kb_raft_data(kb, args.model, settings, RUNS / "data")
    overrides = {"max_seq_tokens": data.max_seq_tokens, "epochs": raft_epochs(settings),
                 "max_steps": settings.finetune.max_steps or settings.raft.kb_max_steps}
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    runs: dict[str, list] = {"today": [], "probe (before)": []}
    for r in range(args.rounds):
        for name, cls in (("today", FineTuner), ("probe (before)", ProbeTuner)):
            out = RUNS / f"{'probe' if cls is ProbeTuner else 'today'}-{r}"
            shutil.rmtree(out, ignore_errors=True)
            tuner = cls(args.model, settings=settings.finetune, **overrides)
            started = time.perf_counter()
            result = tuner.fit(data.train, data.validation, out)
            runs[name].append((time.perf_counter() - started, result))
            print(f"round {r} {name}: {runs[name][-1][0]:.1f} s", flush=True)
    best = {name: min(runs[name], key=lambda x: x[0]) for name in runs}
    (t_today, today), (t_probe, probe) = best["today"], best["probe (before)"]
    vt = [e["val_loss"] for e in today.report["evaluations"]]
    vp = [e["val_loss"] for e in probe.report["evaluations"]]
    diff = max((a - b).abs().max().item() for a, b in zip(today.model.state_dict().values(),
                                                           probe.model.state_dict().values()))
    plan = today.report["plan"]
    rows = "\n".join(f"| {name} | {min(t for t, _ in runs[name]):.1f} | "
                     f"{', '.join(f'{t:.1f}' for t, _ in runs[name])} | {len(res.report['evaluations'])} | "
                     f"{res.best_step} | {res.best_val_loss:.4f} |"
                     for name, (_, res) in best.items())
    body = f"""`ragtune finetune --kb {kb.relative_to(REPO)} --raft` as the command trains it (its data built once:
{len(data.train)} RAFT prompts, the validation split {today.report['data']['validation_examples']} of them;
{plan['total']} steps of {plan['global_batch']}, an evaluation every {plan['eval_every']}), trained {args.rounds}
times by each trainer, interleaved. Load before: `{load}`.

| trainer | fit s (best) | every round | evaluations | best step | best val loss |
|---|---|---|---|---|---|
{rows}

**Today / before: {t_today / t_probe:.2f}x the time.** Validation losses identical at every evaluation:
{vt == vp}; largest weight difference between the two adapters: {diff:.1e}.
"""
    append_section("Training: what an evaluation costs (train loss from the steps, not a probe pass)", body)


if __name__ == "__main__":
    main()
