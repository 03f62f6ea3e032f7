"""The whole training file against `choose.max_train_examples`' cap: score and time of the fine-tuned contestant.

    python bench/train_cap.py tfhub              # TF Hub APIBench: its own train split (550 rows)
    python bench/train_cap.py tickets            # a narrow task of our own: ticket -> team handle (900 rows)
    python bench/train_cap.py tickets --caps 256 0

Each cap runs `ragtune choose`'s own stages (check, split, training data with the cap, fine-tune) in
runs/train_cap/<task>/cap<N>, then asks base and fine-tuned the same test questions with the task's metric
(`runner.evaluate`, the answer cap `choose` would tune). Cap 0 is the whole file (`--train-all`). The task's
instruction and prompts are the bake-off's: only the number of training rows differs. Resumes like choose does.

The `tickets` task is invented here, seeded: 48 products, each owned by one of 12 teams; a ticket names a product
among noise, and the answer is the owning team's handle. Nothing of it is in any model, so what the fine-tuned
model knows of the mapping comes from the rows it trained on: the case where cutting rows could cost most.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402
from ragtune.choose import Choice, answer_cap  # noqa: E402
from ragtune.choose.inputs import locked  # noqa: E402
from ragtune.choose.parts import with_values  # noqa: E402
from ragtune.evaluate import runner  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RUNS = REPO / "runs" / "train_cap"

TEAMS = ["billing-core", "ledger-ops", "mobile-shell", "web-front", "search-infra", "identity", "payments-edge",
         "data-lake", "notify", "storage-cold", "edge-cache", "devx-tools"]
SYLLABLES = ["kor", "vel", "tam", "rix", "pol", "zen", "dra", "mur", "quo", "sil", "bek", "nar", "ful", "gis"]
OPENERS = ["Hi team,", "Hello,", "Urgent:", "Customer report:", "FYI", "Escalation:", "Quick one:", ""]
PROBLEMS = ["keeps timing out after the last release", "shows a blank screen on login",
            "double-charged two customers this morning", "returns HTTP 500 for every request",
            "lost the settings users saved yesterday", "is very slow since Monday", "crashes on start",
            "sends every notification twice", "rejects valid API keys", "exports an empty CSV"]
CLOSERS = ["Thanks!", "Please advise.", "Ticket raised by support.", "Can someone look?", "", "Priority P2."]


def tickets(folder: Path, n_train: int = 900, n_test: int = 100, seed: int = 7) -> Path:
    """The invented routing task as a JSON Lines QA file with a `split` field (written once, seeded)."""
    rng = random.Random(seed)
    products: dict[str, str] = {}
    while len(products) < 48:
        name = "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize() + rng.choice(["", " Pro", " Sync"])
        products.setdefault(name, TEAMS[len(products) % len(TEAMS)])
    names = sorted(products)

    def row(split: str) -> dict:
        product = rng.choice(names)
        text = " ".join(t for t in (rng.choice(OPENERS), f"{product} {rng.choice(PROBLEMS)}.",
                                    rng.choice(CLOSERS)) if t)
        return {"question": f"Route this ticket to the owning team's handle: {text}",
                "answers": [products[product]], "split": split}

    rows = ([row("train") for _ in range(n_train)] + [row("validation") for _ in range(16)]
            + [row("test") for _ in range(n_test)])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tickets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def measure(qa: Path, task: str, cap: int, metric: str | None) -> dict:
    """Train at ``cap`` through choose's own stages and score base and fine-tuned on the test part."""
    out = RUNS / task / f"cap{cap}"
    choice = Choice(qa, out, metric=metric, overrides={"choose.max_train_examples": cap})
    with locked(out):
        choice.refresh([])
        choice.check(choice.qa)
        parts = choice.split(choice.qa)
        examples = choice.train_data(parts, choice.kb)  # a declared train split: no documents needed
        started = time.perf_counter()
        finetuned = choice.finetune(examples)
        seconds = choice.state["finetune"]["seconds"] if "finetune" in choice.state else time.perf_counter() - started
        settings = with_values(choice.settings, {"generator.max_new_tokens": answer_cap(parts.dev + parts.test)})
        results = runner.evaluate(replace(choice.qa, items=parts.test, documents=[]), model=choice.model,
                                  finetuned=finetuned, out=out / "eval", variants=["base", "finetuned"],
                                  settings=settings, report=False)
    train = choice.state["train_data"]
    report = json.loads((out / "finetuned" / "training_report.json").read_text())
    return {"cap": cap, "rows": train["examples"], "available": train["available"], "train_s": seconds,
            "steps": report.get("steps"), "val_loss": (report.get("best") or {}).get("val_loss"),
            "stopped_early": report.get("stopped_early"), "test": len(parts.test),
            "scores": {v: (s["score"], s["ci"]["score"]) for v, s in results["variants"].items()},
            "metric": results.get("headline")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=["tfhub", "tickets"])
    ap.add_argument("--caps", type=int, nargs="+", default=[256, 0], help="choose.max_train_examples values")
    args = ap.parse_args()
    qa, metric = ((DATA / "tfhub-apibench", None) if args.task == "tfhub"
                  else (tickets(RUNS / "tickets-data"), "normalized"))
    rows = [measure(qa, args.task, cap, metric) for cap in args.caps]
    lines = ["| cap | rows trained | steps | training s | best val loss | base | fine-tuned [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        base, (ft, ci) = r["scores"]["base"][0], r["scores"]["finetuned"]
        lines.append(f"| {r['cap'] or 'none (whole file)'} | {r['rows']} of {r['available']} | {r['steps']} | "
                     f"{r['train_s']:.0f} | {r['val_loss'] if r['val_loss'] is None else round(r['val_loss'], 4)} | "
                     f"{base:.3f} | {ft:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] |")
    body = (f"Task `{args.task}`, {rows[0]['test']} test questions, metric `{rows[0]['metric']}`; the fine-tuned "
            "contestant of `ragtune choose` trained through its own stages with only `choose.max_train_examples` "
            "changed.\n\n" + "\n".join(lines))
    append_section(f"Training rows: the whole file against the cap ({args.task})", body)
    (RUNS / args.task / "train_cap.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
