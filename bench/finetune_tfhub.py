"""Fine-tune the default model on TF Hub APIBench and compare test accuracy with the base model.

    python bench/finetune_tfhub.py [--data ../shared/data/tfhub-apibench] [--epochs 2] [--out runs/tfhub]

Split: eval.jsonl shuffled with seed 0 into 80/10/10 % train/validation/test (ragtune.evaluate.apibench).
Accuracy: share of test items whose generated reply scores 1 under the `call` metric against the gold api_call
(ragtune.evaluate.scorers, the one `ragtune eval` uses). Both models get the same prompt
(system line + instruction, the model's chat template) and decode greedily; both load through
ragtune.models.loading (the fine-tuned one as an adapter folder), so this also checks that path.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import torch
from transformers import StoppingCriteria

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import append_section  # noqa: E402
from ragtune.evaluate.apibench import load_apibench  # noqa: E402
from ragtune.evaluate.calls import first_call  # noqa: E402
from ragtune.evaluate.scorers import get_metric  # noqa: E402
from ragtune.finetune import finetune  # noqa: E402
from ragtune.models.loading import load_model_and_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


class StopAfterCall(StoppingCriteria):
    """Stop a sequence once its reply holds a whole call: scoring reads only the first call to the gold's
    function, so decoding further is mostly wasted time (same rule for both models)."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:], skip_special_tokens=True)
        return torch.tensor([_call_closed(t) for t in texts])


def _call_closed(text: str) -> bool:
    """The reply holds a call and closes every bracket it opened (a call cut short is completed by `first_call`,
    so being found is not enough)."""
    return first_call(text) is not None and text.count("(") <= text.count(")")


@torch.no_grad()
def generate(model, tokenizer, examples, max_new_tokens: int = 40, batch_size: int = 8) -> list[str]:
    """Greedy replies for the prompts of ``examples`` (left-padded batches)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    replies = []
    for i in range(0, len(examples), batch_size):
        prompts = [tokenizer.apply_chat_template(e.messages[:-1], tokenize=False, add_generation_prompt=True)
                   for e in examples[i:i + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        stop = StopAfterCall(tokenizer, enc["input_ids"].shape[1])
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, stopping_criteria=[stop])
        replies += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        print(f"  generated {len(replies)}/{len(examples)}", file=sys.stderr)
    return replies


def is_correct(reply: str, gold: str) -> bool:
    """The reply scores 1 under `ragtune eval`'s metric for API calls (one implementation, in the product)."""
    return get_metric("call")(reply, [gold]) == 1.0


def accuracy(spec: str, test, cache: Path | None = None, max_new_tokens: int = 96) -> tuple[float, list[dict]]:
    """Test accuracy of a model spec; replies are cached in ``cache`` (keyed by spec, test items, budget and
    stopping rule) and scored afresh each time."""
    key = [spec, max_new_tokens, [e.answer for e in test], [e.messages[-2]["content"] for e in test], "call-closed"]
    if cache and cache.is_file() and json.loads(cache.read_text())["key"] == key:
        replies = [r["reply"] for r in json.loads(cache.read_text())["rows"]]
    else:
        model, tokenizer = load_model_and_tokenizer(spec, device="cpu", dtype="float32")
        model.eval()
        replies = generate(model, tokenizer, test, max_new_tokens=max_new_tokens)
    rows = [{"gold": e.answer, "reply": r, "correct": is_correct(r, e.answer),
             "target": ast.unparse(c) if (c := first_call(r)) is not None else None} for e, r in zip(test, replies)]
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, "rows": rows}, indent=1))
    return sum(r["correct"] for r in rows) / len(rows), rows


def reuse(out: Path):
    """A finished run's result, read back from its training report."""
    from ragtune.finetune.train import FineTuneResult

    rep = json.loads((out / "training_report.json").read_text())
    best = rep.get("best") or {}
    return FineTuneResult(out, None, rep["steps"], best.get("step"), best.get("val_loss"),
                          rep["history"][-1]["loss"], rep["stopped_early"], rep["warnings"], rep)


def base_score(args, splits) -> tuple[float, list[dict], float]:
    t0 = time.perf_counter()
    acc, rows = accuracy(args.model, splits["test"], Path(args.out + "-base") / "predictions.json",
                         args.max_new_tokens)
    return acc, rows, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "tfhub-apibench"))
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", default=str(REPO / "runs" / "tfhub"))
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--max-steps", type=int, default=None, help="cap on optimizer steps (batch 8)")
    ap.add_argument("--eval-examples", type=int, default=32, help="validation examples per evaluation")
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=96, help="reply budget (decoding stops once the first call "
                    "is closed)")
    ap.add_argument("--base-only", action="store_true", help="only score (and cache) the base model")
    ap.add_argument("--reuse", action="store_true", help="reuse a finished run in --out instead of training")
    ap.add_argument("--max-seq", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    splits = load_apibench(args.data, seed=args.seed)
    sizes = {k: len(v) for k, v in splits.items()}
    print(f"split (seed {args.seed}): {sizes}", file=sys.stderr)
    if args.base_only:
        print(f"base accuracy {base_score(args, splits)[0]:.3f}", file=sys.stderr)
        return

    t0 = time.perf_counter()
    done = Path(args.out) / "training_report.json"
    if args.reuse and done.is_file():
        result = reuse(Path(args.out))
    else:
        result = finetune(splits["train"], model=args.model, out=args.out, validation=splits["validation"],
                          epochs=args.epochs, learning_rate=args.lr, max_seq_tokens=args.max_seq, batch_size=8,
                          eval_every=args.eval_every, save_every=args.eval_every, patience=3, seed=args.seed,
                          max_steps=args.max_steps, eval_max_examples=args.eval_examples, resume=True)
    t_train = time.perf_counter() - t0
    ft_acc, ft_rows = accuracy(args.out, splits["test"], Path(args.out) / "predictions.json", args.max_new_tokens)
    print(f"fine-tuned accuracy {ft_acc:.3f}", file=sys.stderr)
    # after training, so that a parallel `--base-only` run may already have cached the base replies
    base_acc, base_rows, t_base = base_score(args, splits)
    (Path(args.out) / "tfhub_predictions.json").write_text(json.dumps({"base": base_rows, "finetuned": ft_rows},
                                                                      indent=1))
    rep = result.report
    body = f"""
Task: instruction → TF Hub API call (Gorilla APIBench `eval.jsonl`, {sum(sizes.values())} items), split with
seed {args.seed} into train/validation/test = {sizes['train']}/{sizes['validation']}/{sizes['test']}
(`ragtune.evaluate.apibench.load_apibench`). Accuracy = share of test items whose reply scores 1 under the
`call` metric against the gold `api_call` (the first call to the same function, compared as a syntax tree:
`ragtune.evaluate.scorers`, as `ragtune eval`), same prompt for both, greedy decoding up to
{args.max_new_tokens} new tokens (stopped once the reply's first call is closed).

| model | test accuracy | correct |
|---|---|---|
| {args.model} (base) | {base_acc:.3f} | {sum(r['correct'] for r in base_rows)}/{len(base_rows)} |
| {args.model} + LoRA (ragtune finetune) | **{ft_acc:.3f}** | {sum(r['correct'] for r in ft_rows)}/{len(ft_rows)} |

Fine-tuning: LoRA r={rep['hyperparameters']['lora_r']}, lr {args.lr}, {args.epochs} epochs max
(max_steps {args.max_steps}), batch 8, validation loss on {args.eval_examples} examples every {args.eval_every} steps,
max_seq {args.max_seq}, {result.steps} steps (best at {result.best_step}, early stop: {result.stopped_early}),
best validation loss {result.best_val_loss:.4f}, generalisation gap {rep['generalisation_gap']:.4f},
{rep['tokens_per_second']:.0f} training tokens/s, {t_train / 60:.1f} min training (incl. loading);
base evaluation {t_base / 60:.1f} min (0 when cached). Difference: {100 * (ft_acc - base_acc):+.1f} accuracy points.
"""
    append_section("Fine-tuning on TF Hub APIBench (accuracy, base vs fine-tuned)", body)


if __name__ == "__main__":
    main()
