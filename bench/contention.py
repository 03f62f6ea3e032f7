"""Training and generation on a shared machine: each slowdown under a competing CPU-heavy process, beside a baseline's.

    flock /tmp/ragtune-bench.lock python bench/contention.py [--steps 8] [--tokens 32] [--rounds 2]
        [--only train|gen] [--env KEY=VALUE ...]

Four workloads, each in its own subprocess (a fresh interpreter, so thread settings taken at import apply):
(a) ragtune's fine-tuning loop (`ragtune.finetune`, the package defaults) and (b) the plain transformers + peft
loop of bench/finetune_vs_trl.py, with the same hyper-parameters as that bench (TF Hub APIBench train rows from
../shared/data, LoRA r 16, batch 8, max length 128, ``--steps`` optimizer steps; seconds = the timed steps);
(c) ragtune's default generator (the compiled engine) and (d) plain transformers ``generate`` (fp32), ``--tokens``
new tokens greedily from a RAG prompt of about 300 tokens (seconds = the best of 3 calls after a warm-up).
Each runs quiet and under load, where "load" is a competitor started just before it and killed after: another
torch process with default threads multiplying 512 x 512 matrices in a loop (what a developer's machine runs:
someone else's tests or training). Rounds are interleaved (quiet, loaded, quiet, ...), and the best round of
each is kept. Slowdown = loaded seconds / quiet seconds. ``--env`` sets variables for the measured process only
(to probe thread and OpenMP settings); the 1-minute load average before each run is printed, since other
people's jobs also run here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
SIDES = {"train": ("peft", "ragtune", "ragtune-spin"), "gen": ("transformers", "engine")}
NAMES = {"peft": "plain transformers + peft loop (baseline)", "ragtune": "ragtune finetune",
         "ragtune-spin": "ragtune finetune, libgomp's spinning default (GOMP_SPINCOUNT=300000: before the fix)",
         "transformers": "plain transformers generate (baseline)", "engine": "ragtune default generator"}
COMPETITOR = "import torch\na = torch.randn(512, 512)\nwhile True:\n    a @ a\n"


def train(side: str, steps: int) -> float:
    if side == "peft":
        import torch  # noqa: F401  before ragtune: the plain loop keeps libgomp's defaults, as a user's script does
    import finetune_vs_trl as bench

    bench.val_loss = lambda *a: float("nan")  # validation loss is not this bench's question
    run = bench.run_ragtune if side == "ragtune" else bench.run_peft
    with tempfile.TemporaryDirectory() as tmp:
        return float(run("smollm2", steps, Path(tmp) / "out", 0)["seconds"])


def generate(side: str, tokens: int) -> float:
    import torch  # noqa: F401  the plain side: libgomp's defaults (ragtune's engine does not run torch's threads)

    from ragtune.cli.ask import DEMO_QUESTIONS, SAMPLE_KB
    from ragtune.models.backends import load_generator
    from ragtune.models.loading import load_model_and_tokenizer
    from ragtune.models.prompts import rag_messages
    from ragtune.types import Hit

    hits = [Hit((SAMPLE_KB / "warranty.txt").read_text(), "warranty.txt", 1.0)]
    messages = rag_messages(DEMO_QUESTIONS[1], hits)
    if side == "engine":
        default = load_generator(repeat_ngram=0, stop=[])
        prompt = default.prompt_ids(messages)

        def call() -> None:
            list(default._tokens(prompt, tokens, 0.0))
    else:
        model, tokenizer = load_model_and_tokenizer("smollm2")
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                            return_tensors="pt")["input_ids"]

        def call() -> None:
            with torch.inference_mode():
                model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                               min_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    call()  # warm-up
    times = []
    for _ in range(3):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(side: str, loaded: bool, args) -> float:
    kind = next(k for k, sides in SIDES.items() if side in sides)
    env = {**os.environ, **dict(kv.split("=", 1) for kv in args.env)}
    if side == "ragtune-spin":
        env["GOMP_SPINCOUNT"] = "300000"  # ragtune keeps a user's value: this restores libgomp's default
    competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if loaded else None
    try:
        time.sleep(2 if loaded else 0)  # the competitor's torch import, so it is busy from the start
        proc = subprocess.run([sys.executable, __file__, "--one", side, "--steps", str(args.steps), "--tokens",
                               str(args.tokens)], capture_output=True, text=True, env=env)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not line:
        sys.exit(f"{kind} {side} failed:\n{proc.stderr[-3000:]}")
    return float(line[-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", choices=sorted(SIDES))
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the measured process")
    ap.add_argument("--before", action="store_true", help="also ragtune with libgomp's spinning default")
    ap.add_argument("--no-report", action="store_true", help="print only; do not append to BENCHMARKS.md")
    ap.add_argument("--one", choices=sorted(NAMES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        seconds = train(args.one.split("-")[0], args.steps) if args.one in SIDES["train"] else generate(args.one, args.tokens)
        return print(f"RESULT {json.dumps(seconds)}")
    sides = [s for k, group in SIDES.items() if args.only in (None, k) for s in group
             if args.before or s != "ragtune-spin"]
    best: dict[tuple[str, bool], float] = {}
    loads: list[float] = []
    for rnd in range(args.rounds):
        for side in sides:
            for loaded in (False, True):
                loads.append(os.getloadavg()[0])
                seconds = measure(side, loaded, args)
                print(f"round {rnd} {side} {'loaded' if loaded else 'quiet'}: {seconds:.1f} s "
                      f"(load before: {loads[-1]:.2f})", file=sys.stderr, flush=True)
                best[side, loaded] = min(seconds, best.get((side, loaded), float("inf")))
    report(best, sides, args, loads)


def report(best: dict[tuple[str, bool], float], sides: list[str], args, loads: list[float]) -> None:
    rows = "\n".join(f"| {NAMES[s]} | {best[s, False]:.1f} | {best[s, True]:.1f} | **{best[s, True] / best[s, False]:.2f}x** |"
                     for s in sides)
    body = f"""
Training: {args.steps} optimizer steps (TF Hub APIBench rows, batch 8, max length 128, LoRA r 16), seconds of the
steps. Generation: {args.tokens} new tokens greedily from a ~300-token RAG prompt, best of 3 calls after a warm-up.
Loaded = one competing process running meanwhile: another torch process with default threads multiplying
512 x 512 matrices in a loop. {args.rounds} interleaved rounds, the best of each kept. Settings for the measured
process: {', '.join(args.env) or 'the defaults'}. 1-minute load average before each run (other people's jobs
included): {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores.

| workload | quiet s | loaded s | slowdown |
|---|---|---|---|
{rows}
"""
    print(body)
    if not args.no_report:
        from _report import append_section

        append_section("Contention: training and generation with a competing CPU-heavy process", body)


if __name__ == "__main__":
    main()
