"""RAG or fine-tuning? All four variants on two opposite tasks, then `advise` on each one's evidence.

    python bench/choose.py squad-mini   # knowledge questions: RAG should win
    python bench/choose.py tfhub        # a narrow task with training data: fine-tuning should win

squad-mini: the 200 questions are shuffled (seed 0) and cut into 100 training questions (the fine-tuning
data: chat turns in the closed-book prompt format; validation = 20 of them, since the aim is to store these
facts), 20 unused and 80 held-out questions. The evaluation asks the 80 held-out questions plus 16 of the training
questions (--n-heldout/--n-seen), so the report shows the generalisation gap (facts seen in training vs not);
the freshness test changes 8 facts and adds 2, asked of the rag and finetuned variants. RAG variants cut the
passages to their 3 sentences nearest the question (rag.context_sentences = 3, on both tasks), a setting chosen
on squad-mini training questions 21-68 (bench/rag_context.py), never on the held-out ones.
tfhub: the fine-tuning helper's seeded 80/10/10 split of eval.jsonl (550/69/69); all 69 test questions are asked
(--n-test takes a seeded sample); the LoRA adapter is trained here (24 steps of 8, lr 1e-3), or taken from
bench/finetune_tfhub.py's runs/tfhub. With --from-checkpoint a training run that is still going is cut at its
newest checkpoint (stated in the section). Every run resumes: training from its checkpoints, evaluation from
predictions.jsonl (answers made under other settings are asked again); --variants runs a subset in parallel
jobs sharing that log.
Scores are given as ratios against the base model (closed-book) measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402

from ragtune.advise import advise  # noqa: E402
from ragtune.config import load_settings  # noqa: E402
from ragtune.evaluate.qa import QASet, load_qa  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
RUNS = REPO / "runs" / "choose"
K = 3  # passages per question (--k)
CONTEXT_SENTENCES = 3  # RAG context compression, chosen on squad-mini training questions (bench/rag_context.py)
# What a user of each task would state: squad-mini's facts are outside a 135M model and the QA set is small and
# broad; tfhub's API catalogue is fixed, the task narrow, with 550 training examples.
CONSTRAINTS = {"squad-mini": {"domain_data_outside_model": True, "dataset_examples": 100, "task": "broad"},
               "tfhub": {"knowledge_change": "static", "dataset_examples": 550, "task": "narrow"}}

PUBLISHED = """
Published direction (much larger models, same question):

| study | task | base | RAG | fine-tuned | fine-tuned + RAG |
|---|---|---|---|---|---|
| Ovadia et al. 2023, Table 2 (Mistral 7B, current events) | knowledge QA accuracy | 0.481 | 0.875 | 0.504–0.588 | 0.810–0.830 |
| Zhang et al. 2024 RAFT, Table 1 (TorchHub) | API accuracy % | – | 8.60 (LLaMA2-7B + RAG) | 84.94 (domain fine-tuned) | – |
"""


def squad_split(seed: int = 0) -> tuple[QASet, list, list, list]:
    qa = load_qa(DATA / "squad-mini")
    items = list(qa.items)
    random.Random(seed).shuffle(items)
    return qa, items[:100], items[100:120], items[120:]


def squad_examples(items) -> list:
    from ragtune.finetune.data import Example
    from ragtune.models.prompts import closed_book_messages

    return [Example(messages=closed_book_messages(it.question) + [{"role": "assistant", "content": it.answers[0]}],
                    source="squad-mini-train", line=i + 1) for i, it in enumerate(items)]


def train(examples, validation, out: Path, epochs: float, lr: float, max_seq: int, max_steps: int | None = None,
          eval_every: int = 10) -> Path:
    if (out / "training_report.json").is_file():
        return out
    from ragtune.finetune import finetune

    finetune(examples, model="smollm2", out=out, validation=validation, epochs=epochs, learning_rate=lr,
             max_seq_tokens=max_seq, batch_size=8, eval_every=eval_every, save_every=10, patience=0, seed=0,
             resume=True, max_steps=max_steps)
    return out


def export_checkpoint(run_dir: Path, out: Path, lr: float, max_seq: int, max_steps: int | None = None,
                      epochs: float = 1.0) -> Path:
    """An adapter folder from a training run's newest checkpoint (a run stopped early for the time budget),
    with a training_report.json holding the seconds and tokens spent up to that checkpoint."""
    if (out / "training_report.json").is_file():
        return out
    from safetensors.torch import load_file

    from ragtune.config import FinetuneSettings
    from ragtune.finetune import base, checkpoint
    from ragtune.finetune.encode import ensure_chat_template

    step_dir = checkpoint.latest(run_dir / "checkpoints")
    if step_dir is None:
        raise SystemExit(f"{run_dir}: no checkpoint yet")
    state = json.loads((step_dir / "state.json").read_text())
    s = FinetuneSettings(learning_rate=lr, max_seq_tokens=max_seq, max_steps=max_steps, epochs=epochs)
    model, tokenizer = base.load_base(base.resolve_spec("smollm2"))
    ensure_chat_template(tokenizer)
    model = base.prepare(model, "lora", s.lora_r, s.lora_alpha, s.lora_dropout, s.lora_target_modules)
    checkpoint.load_trainable(model, load_file(str(step_dir / "trainable.safetensors")))
    model.eval()
    base.save_model(model, tokenizer, out, base.resolve_spec("smollm2"), "lora")
    (out / "training_report.json").write_text(json.dumps({
        "seconds": state.get("seconds"), "tokens": state.get("tokens"), "steps": state.get("step"),
        "exported_from": str(step_dir.relative_to(REPO)), "evaluations": state.get("evals")}, indent=1))
    return out


def run_squad(args) -> tuple[dict, str]:
    qa, train_items, val_items, eval_items = squad_split()
    run = RUNS / "squad-mini"
    run.mkdir(parents=True, exist_ok=True)
    train_file = run / "train.jsonl"
    train_file.write_text("".join(json.dumps({"question": it.question, "answer": it.answers[0]}) + "\n"
                                  for it in train_items))
    # validation = 20 of the training questions: the aim is to store these facts, and the best checkpoint must
    # be the one that stores them best (held-out facts cannot be learnt, so their loss only rises)
    asked = QASet("squad-mini", eval_items[:args.n_heldout] + train_items[:args.n_seen], qa.documents, "f1")
    if args.from_checkpoint:  # the run is stopped for time: its newest checkpoint becomes the adapter
        export_checkpoint(run / "ft", run / "ft-export", lr=5e-4, max_seq=96, epochs=5)
    exported = run / "ft-export" if (run / "ft-export" / "training_report.json").is_file() else None
    if args.variants:  # a partial run: parallel jobs share the answer log; the full run then only resumes
        ft = (exported or run / "ft") if any("finetuned" in v for v in args.variants) else None
        evaluate(asked, ft, run, max_new_tokens=32, train_qa=train_file if ft else None, freshness=args.fresh,
                 variants=args.variants)
        sys.exit(0)
    ft = exported or train(squad_examples(train_items), squad_examples(train_items[:20]), run / "ft",
                           epochs=args.epochs or 5, lr=5e-4, max_seq=96)
    if args.train_only:
        sys.exit(0)
    return evaluate(asked, ft, run, max_new_tokens=32, train_qa=train_file, freshness=True), (
        f"squad-mini: {len(train_items)} training / {len(val_items)} unused / {len(eval_items)} held-out questions "
        f"(seed 0); asked {args.n_heldout} held-out + {args.n_seen} seen-in-training questions; adapter "
        f"{ft.relative_to(REPO)} (LoRA r=16, lr 5e-4, 5-epoch schedule"
        f"{', exported from checkpoint ' + json.loads((ft / 'training_report.json').read_text()).get('exported_from', '') if ft == exported else ''})")


def run_tfhub(args) -> tuple[dict, str]:
    qa = load_qa(DATA / "tfhub-apibench")
    mine, theirs, exported = RUNS / "tfhub" / "ft", REPO / "runs" / "tfhub", RUNS / "tfhub" / "ft-export"
    if args.from_checkpoint:  # a training run still going (ours, else bench/finetune_tfhub.py's): its newest checkpoint
        export_checkpoint(mine if (mine / "checkpoints").is_dir() else theirs, exported, lr=1e-3, max_seq=128,
                          max_steps=24)
    ft = next((d for d in (mine, exported, theirs) if (d / "training_report.json").is_file()), None)
    asked = qa.split("test").subset(args.n_test)
    if args.variants:  # a partial run (see run_squad)
        evaluate(asked, ft if any("finetuned" in v for v in args.variants) else None, RUNS / "tfhub",
                 max_new_tokens=48, variants=args.variants)
        sys.exit(0)
    if ft is None:
        from ragtune.finetune.apibench import load_apibench

        splits = load_apibench(DATA / "tfhub-apibench")
        # a short run (24 steps of 8 = 192 of the 550 training examples) fits this shared machine's time budget;
        # validation on 8 of the validation items every 12 steps keeps evaluation cheap
        ft = train(splits["train"], splits["validation"][:8], mine, epochs=args.epochs or 1, lr=1e-3,
                   max_seq=128, max_steps=24, eval_every=12)
    if args.train_only:
        sys.exit(0)
    return evaluate(asked, ft, RUNS / "tfhub", max_new_tokens=48), (
        f"tfhub-apibench: seeded 80/10/10 split (550/69/69, `ragtune.finetune.apibench`); the {len(asked.items)} "
        f"test questions asked; adapter {ft.relative_to(REPO)} (LoRA r=16, lr 1e-3, batch 8"
        f"{', exported from checkpoint ' + json.loads((ft / 'training_report.json').read_text()).get('exported_from', '') if ft == exported else ''})")


def evaluate(qa: QASet, finetuned: Path | None, run: Path, max_new_tokens: int, train_qa: Path | None = None,
             freshness: bool = False, variants: list[str] | None = None) -> dict:
    from ragtune.evaluate.runner import evaluate as run_eval

    settings = load_settings(overrides={"generator.max_new_tokens": max_new_tokens, "retrieval.k": K,
                                        "rag.context_sentences": CONTEXT_SENTENCES})
    out = run / "report" if K == 3 else run / f"report-k{K}"
    if K != 3 and not out.exists() and (run / "report" / "predictions.jsonl").is_file():
        # closed-book answers do not depend on k: start from those of the k=3 run
        out.mkdir(parents=True)
        lines = (run / "report" / "predictions.jsonl").read_text().splitlines()
        (out / "predictions.jsonl").write_text("".join(l + "\n" for l in lines if '"variant": "base"' in l
                                                       or '"variant": "finetuned"' in l))
        if (run / "report" / "usage.json").is_file():
            usage = json.loads((run / "report" / "usage.json").read_text())
            (out / "usage.json").write_text(json.dumps({k: v for k, v in usage.items() if "rag" not in k}))
    t0 = time.perf_counter()
    results = run_eval(qa, kb=run / "kb", model="smollm2", finetuned=str(finetuned) if finetuned else None,
                       out=out, settings=settings, train_qa=train_qa, freshness=freshness,
                       freshness_questions=8, freshness_variants=["rag", "finetuned"], variants=variants)
    results["wall_seconds"] = time.perf_counter() - t0
    return results


def section(name: str, results: dict, how: str) -> str:
    v, key = results["variants"], results["headline"]
    base = v["base"]["score"] or 0.0
    rows = "\n".join(
        f"| {n} | {s['score']:.3f} | [{s['ci']['score'][0]:.3f}, {s['ci']['score'][1]:.3f}] | "
        f"{_ratio(s['score'], base)} | {s['em']:.3f} | {s['contains']:.3f} [{s['ci']['contains'][0]:.2f}, "
        f"{s['ci']['contains'][1]:.2f}] | "
        f"{_f(s['groundedness'])} | {s['latency_s']['p50']:.2f} / {s['latency_s']['p95']:.2f} | "
        f"{_f(s['peak_rss_mb'], 0)} |" for n, s in v.items())
    r = results.get("retrieval") or {}
    t = results.get("training") or {}
    gen = v.get("finetuned", {}).get("generalisation")
    f = results.get("freshness") or {}
    rec = advise({}, results)
    stated = CONSTRAINTS[name]
    rec2 = advise(stated, results)
    sets = " ".join(f"--set {k}={str(v).lower()}" for k, v in stated.items())
    fresh_rows = "\n".join(f"| {n} | {_f(s['changed_fresh'])} | {_f(s['changed_stale'])} | {_f(s['new_facts'])} |"
                           for n, s in f.get("variants", {}).items())
    fresh_block = f"""Freshness (`--freshness`: {f.get('n_changed')} facts changed in their documents, {f.get('n_new')} new documents;
KB update {_f(f.get('kb_update_seconds'), 2)} s vs retraining {_f(f.get('retrain_seconds'), 0)} s):

| variant | changed facts: new value | changed facts: old value | new facts |
|---|---|---|---|
{fresh_rows}
""" if fresh_rows else ""
    body = f"""
{how}. Model: SmolLM2-135M-Instruct (packaged), greedy, max_new_tokens {results['settings']['max_new_tokens']},
retrieval k={results['settings']['k']} ({results['settings']['retrieval_mode']}). Headline metric: **{key}**;
95% paired-bootstrap CIs (1,000 resamples); "×base" is the ratio to the closed-book base model in this run.

| variant | {key} | 95% CI | ×base | EM | contains [95% CI] | groundedness | latency p50 / p95 s | peak RSS MiB |
|---|---|---|---|---|---|---|---|---|
{rows}

Best: **{results['best']}**{' (tied with ' + ', '.join(results['tied_with_best']) + ')' if results['tied_with_best'] else ''}.
Retrieval: recall@1 {_f(r.get('recall@1'))}, recall@{r.get('k')} {_f(r.get('recall@k'))}, MRR@10 {_f(r.get('mrr'))}
over {r.get('n')} questions.
Training cost of the fine-tuned variant: {_f(t.get('seconds'), 0)} s, {t.get('tokens')} tokens,
{t.get('examples') or '–'} examples.
{f"Generalisation (fine-tuned, closed-book): seen in training {_f(gen['seen']['score'])} (n={gen['seen']['n']}), held out {_f(gen['held_out']['score'])} (n={gen['held_out']['n']}), gap {_f(gen['gap'])}." if gen else ""}

{fresh_block}
Evidence only — `ragtune advise --evidence {(RUNS / name / ('report' if K == 3 else f'report-k{K}')).relative_to(REPO)} --json` → **{rec.recommendation}**:
{chr(10).join('- ' + r for r in rec.reasons[:6])}

Evidence plus the task's stated constraints — `ragtune advise {sets} --evidence ...` → **{rec2.recommendation}**:
{chr(10).join('- ' + r for r in rec2.reasons[:6])}

Whole run (incl. KB indexing, model loads, freshness): {results['wall_seconds'] / 60:.1f} min.
{PUBLISHED}
"""
    return body


def _ratio(x: float, base: float) -> str:
    return f"{x / base:.1f}×" if base else "– (base 0)"


def _f(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", choices=["squad-mini", "tfhub"])
    ap.add_argument("--n-heldout", type=int, default=80)
    ap.add_argument("--n-seen", type=int, default=16)
    ap.add_argument("--n-test", type=int, default=69, help="tfhub: a seeded sample of the 69 test questions")
    ap.add_argument("--variants", type=lambda s: s.split(","), default=None,
                    help="a partial run of these variants (e.g. base,rag while the adapter trains); no section written")
    ap.add_argument("--fresh", action="store_true", help="with --variants: also run the freshness test")
    ap.add_argument("--from-checkpoint", action="store_true",
                    help="use the newest checkpoint of a training run that is still going (time budget)")
    ap.add_argument("--epochs", type=float, default=None)
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--k", type=int, default=3, help="passages retrieved per question")
    args = ap.parse_args()
    global K
    K = args.k
    results, how = run_squad(args) if args.task == "squad-mini" else run_tfhub(args)
    title = {"squad-mini": "Choose: squad-mini (knowledge QA), base vs RAG vs fine-tuned vs both",
             "tfhub": "Choose: tfhub-apibench (narrow task), base vs RAG vs fine-tuned vs both"}[args.task]
    append_section(title, section(args.task, results, how))


if __name__ == "__main__":
    main()
