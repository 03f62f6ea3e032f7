"""RAG or fine-tuning? `ragtune choose` on two opposite tasks with default settings, and its wall time by stage.

    python bench/choose.py squad-mini   # knowledge QA, no training file (synthesised from the paragraphs)
    python bench/choose.py tfhub        # a narrow task with its own training split

A thin caller of `ragtune choose` (ragtune.choose.Choice): no flag or setting of its own beyond the
constraints a user of each task would state. Resumes like the command does (runs/choose/<task>).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402
from ragtune.choose import Choice  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RUNS = REPO / "runs" / "choose"
TASKS = {"squad-mini": DATA / "squad-mini", "tfhub": DATA / "tfhub-apibench"}
# What a user of each task would state: squad-mini's facts are outside a 135M model and the QA set is broad;
# tfhub's API catalogue is fixed and the task narrow.
CONSTRAINTS = {"squad-mini": {"domain_data_outside_model": True, "task": "broad"},
               "tfhub": {"knowledge_change": "static", "task": "narrow"}}


def section(task: str, results: dict, wall: float) -> str:
    v, c = results["variants"], results["choose"]
    key = results["headline"]
    rows = "\n".join(f"| {name} | {s['score']:.3f} [{s['ci']['score'][0]:.3f}, {s['ci']['score'][1]:.3f}] | "
                     f"{(s.get('self_cited') or 0):.3f} | {s['latency_s']['p50']:.2f} |" for name, s in v.items())
    stages = ", ".join(f"{name} {info.get('seconds', 0):.0f} s" for name, info in c.items()
                       if isinstance(info, dict) and "seconds" in info)
    advice = results["advice"]
    return f"""
`ragtune choose {TASKS[task].name} {TASKS[task].name}` with default settings; {results['qa']['n']} test questions,
{c['split']['dev']} dev questions for tuning; training data: {c['train_data']['origin']}
({c['train_data']['examples']} examples). Chosen on dev: `{c['tune']['chosen']}`.

| contestant | {key} [95% CI] | self-cited | p50 s |
|---|---|---|---|
{rows}

Recommendation (constraints {CONSTRAINTS[task]}): **{advice['recommendation']}**
{chr(10).join('- ' + r for r in advice['reasons'][:6])}

Wall time: {wall / 60:.1f} min this invocation; by stage: {stages}.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=sorted(TASKS))
    args = ap.parse_args()
    started = time.perf_counter()
    results = Choice(TASKS[args.task], RUNS / args.task, constraints=CONSTRAINTS[args.task]).run([TASKS[args.task]])
    (RUNS / args.task / "bench.json").write_text(json.dumps({"wall_seconds": time.perf_counter() - started}))
    append_section(f"Choose: {args.task} with `ragtune choose` defaults",
                   section(args.task, results, time.perf_counter() - started))


if __name__ == "__main__":
    main()
