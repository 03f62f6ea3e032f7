"""Fine-tuning, the loop written out: batches → loss on answer tokens → AdamW → evaluate → checkpoint.

    import ragtune
    result = ragtune.finetune("qa.jsonl", model="smollm2", out="runs/ft", epochs=2)
    ragtune.RAG(kb, model=result.out_dir)   # or: ragtune ask "..." --model runs/ft

Runs in one process or several (``torchrun --nproc_per_node 2 -m ragtune.cli.main finetune ...``):
``accelerate.Accelerator`` wraps the model for data-parallel training and every process sees the same
seeded example order, taking its own slice of each batch. The data position is the optimizer step,
so a resumed run continues with exactly the batch it would have seen next.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ragtune.config import FinetuneSettings, Settings, load_settings
from pydantic import ValidationError

from ragtune.errors import ConfigError, InputError, ModelError
from ragtune.finetune import base, checkpoint, report
from ragtune.finetune.data import Example, dataset_hash, load_examples, split_examples
from ragtune.finetune.encode import IGNORE, Encoded, encode_examples, ensure_chat_template


@dataclass
class FineTuneResult:
    """Where the model went and how training went."""

    out_dir: Path  # load with `--model out_dir` (adapter + tokenizer, or a full model folder)
    merged_dir: Path | None
    steps: int
    best_step: int | None
    best_val_loss: float | None
    final_train_loss: float | None
    stopped_early: bool
    warnings: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # the trained model in memory (best weights, eval mode), e.g. to evaluate at once
    tokenizer: Any = None


def finetune(dataset: str | Path | list[Example], model: str | None = None, out: str | Path = "runs/ft",
             method: str | None = None, validation: str | Path | list[Example] | None = None, resume: bool = False,
             **hyperparameters: Any) -> FineTuneResult:
    """Fine-tune ``model`` on ``dataset`` and write the result to ``out``; keyword arguments are
    ``[finetune]`` settings (epochs, learning_rate, batch_size, max_seq_tokens, lora_r, ...)."""
    return FineTuner(model, method=method, **hyperparameters).fit(dataset, validation=validation, out=out,
                                                                  resume=resume)


class FineTuner:
    """A model spec plus settings; ``fit`` trains on a dataset and saves a loadable folder."""

    def __init__(self, model: str | None = None, method: str | None = None, settings: FinetuneSettings | None = None,
                 device: str = "cpu", **overrides: Any):
        # None: the value from ragtune.toml / RAGTUNE_* (generator.model, finetune.method), never a second default
        loaded = load_settings() if settings is None or model is None else Settings()
        base_settings = settings or loaded.finetune
        model = model or loaded.generator.model
        try:
            self.settings = FinetuneSettings.model_validate({**base_settings.model_dump(),
                                                             **({"method": method} if method else {}), **overrides})
        except ValidationError as e:
            err = e.errors()[0]
            raise ConfigError(f"finetune setting '{'.'.join(map(str, err['loc']))}': {err['msg']} "
                              "(see `ragtune config` for the [finetune] fields)") from None
        self.model_spec = base.resolve_spec(model)
        self.device = device

    def fit(self, train: str | Path | list[Example], validation: str | Path | list[Example] | None = None,
            out: str | Path = "runs/ft", resume: bool = False) -> FineTuneResult:
        """Train, keep the best weights, and write the model folder, report, plot and card to ``out``."""
        try:
            from accelerate import Accelerator
        except ImportError:
            raise ModelError("fine-tuning needs accelerate and peft; pip install 'ragtune[finetune]'") from None

        s = self.settings
        out = Path(out)
        train_source = str(train) if not isinstance(train, list) else "examples"
        train_ex = load_examples(train) if not isinstance(train, list) else train
        if validation is None:
            train_ex, val_ex = split_examples(train_ex, s.validation_fraction, s.seed)
        else:
            val_ex = load_examples(validation) if not isinstance(validation, list) else validation
        accelerator = Accelerator(cpu=self.device == "cpu")
        fingerprint = self._fingerprint(train_ex, val_ex)
        ckpt_dir = out / "checkpoints"
        start = checkpoint.latest(ckpt_dir)
        if start is not None and not resume:
            raise InputError(f"{out}: holds checkpoints of an earlier run; pass --resume to continue it or "
                             "choose another --out")
        _seed_everything(s.seed)
        model, tokenizer = base.load_base(self.model_spec, device=str(accelerator.device))
        ensure_chat_template(tokenizer)
        train_enc, data_stats = encode_examples(tokenizer, train_ex, s.max_seq_tokens, s.loss_on)
        val_enc, _ = encode_examples(tokenizer, val_ex, s.max_seq_tokens, s.loss_on)
        if not train_enc:
            raise InputError(f"{train_source}: no example has an answer token within max_seq_tokens="
                             f"{s.max_seq_tokens}; raise it")
        model = base.prepare(model, s.method, s.lora_r, s.lora_alpha, s.lora_dropout, s.lora_target_modules)
        model.config.use_cache = False
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
        world, micro = accelerator.num_processes, s.batch_size
        global_batch = micro * world * s.gradient_accumulation
        steps_per_epoch = math.ceil(len(train_enc) / global_batch)
        total = math.ceil(s.epochs * steps_per_epoch)
        total = min(total, s.max_steps) if s.max_steps else total
        warmup = int(total * s.warmup_fraction)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_linear(warmup, total))
        model, optimizer = accelerator.prepare(model, optimizer)

        st: dict[str, Any] = {"fingerprint": fingerprint, "best_val": None, "best_step": None, "bad_evals": 0,
                              "history": [], "evals": [], "tokens": 0, "seconds": 0.0, "stopped_early": False}
        step = 0
        if start is not None:
            st = checkpoint.restore(start, model, optimizer, scheduler, accelerator)
            if st["fingerprint"] != fingerprint:
                raise InputError(f"{start}: was made with other data or settings; resume with the same ones "
                                 "or choose another --out")
            step = st["step"]
            if accelerator.is_main_process and (start / "best.safetensors").is_file():
                # the best weights as of this checkpoint (a later, lost "best" is recomputed identically)
                (ckpt_dir / "best").mkdir(exist_ok=True)
                shutil.copyfile(start / "best.safetensors", ckpt_dir / "best" / "trainable.safetensors")
        probe = _train_probe(train_enc, len(val_enc) or 32, s.eval_max_examples, s.seed)
        bar = _progress(total, step, accelerator.is_main_process)
        t0, tokens_at_t0 = time.perf_counter(), st["tokens"]
        while step < total and not st["stopped_early"]:
            model.train()
            batch_ids = _global_batch(len(train_enc), step, steps_per_epoch, global_batch, s.seed)
            chunk = [train_enc[i] for i in batch_ids]
            n_answer = sum(e.answer_tokens for e in chunk)  # every process computes the same total
            loss_sum = _accumulate_gradients(model, accelerator, chunk, micro, s.gradient_accumulation, n_answer,
                                             tokenizer.pad_token_id)
            accelerator.clip_grad_norm_(params, s.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss = accelerator.reduce(torch.tensor(loss_sum, device=accelerator.device), "sum").item() / n_answer
            st["tokens"] += sum(len(e.input_ids) for e in chunk)
            st["history"].append({"step": step, "loss": loss, "lr": scheduler.get_last_lr()[0]})
            tps = (st["tokens"] - tokens_at_t0) / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:.0f}", best_val=_fmt(st["best_val"]))
            bar.update(1)
            if val_enc and (step % s.eval_every == 0 or step == total):
                self._evaluate(model, accelerator, val_enc, probe, tokenizer.pad_token_id, step, st, out)
            if step % s.save_every == 0 and step < total:
                st["seconds"] += time.perf_counter() - t0
                t0, tokens_at_t0 = time.perf_counter(), st["tokens"]
                checkpoint.save(ckpt_dir, step, model, optimizer, scheduler, st, accelerator, s.keep_checkpoints,
                                {"best.safetensors": ckpt_dir / "best" / "trainable.safetensors"})
        bar.close()
        st["seconds"] += time.perf_counter() - t0
        return self._finish(model, tokenizer, accelerator, out, st, step, train_ex, val_ex, data_stats, train_source)

    def _evaluate(self, model, accelerator, val_enc, probe, pad_id, step, st, out: Path) -> None:
        """Validation and train-probe loss; keep the best weights; count evaluations without improvement."""
        s = self.settings
        val = _mean_loss(model, val_enc[:s.eval_max_examples], pad_id, accelerator, s.batch_size)
        train = _mean_loss(model, probe, pad_id, accelerator, s.batch_size)
        st["evals"].append({"step": step, "val_loss": val, "train_loss": train})
        if st["best_val"] is None or val < st["best_val"] - s.min_delta:
            st.update(best_val=val, best_step=step, bad_evals=0)
            if accelerator.is_main_process:
                best = out / "checkpoints" / "best"
                best.mkdir(parents=True, exist_ok=True)
                tmp = best / "trainable.safetensors.tmp"
                save_file(checkpoint.trainable_state(accelerator.unwrap_model(model)), str(tmp))
                tmp.replace(best / "trainable.safetensors")
        else:
            st["bad_evals"] += 1
            if s.patience and st["bad_evals"] >= s.patience:
                st["stopped_early"] = True
        accelerator.wait_for_everyone()

    def _finish(self, model, tokenizer, accelerator, out, st, step, train_ex, val_ex, data_stats, train_source):
        """Best weights back in, then adapter/model, merged folder, report, plot and card (main process)."""
        s = self.settings
        unwrapped = accelerator.unwrap_model(model)
        best_file = out / "checkpoints" / "best" / "trainable.safetensors"
        if st["best_step"] is not None and best_file.is_file():
            checkpoint.load_trainable(unwrapped, load_file(str(best_file)))
        info = {
            "base_model": self.model_spec, "method": s.method, "steps": step, "stopped_early": st["stopped_early"],
            "processes": accelerator.num_processes, "seconds": round(st["seconds"], 2),
            "tokens_per_second": st["tokens"] / max(st["seconds"], 1e-9), "tokens": st["tokens"],
            "hyperparameters": s.model_dump(),
            "data": {"train_source": train_source, "train_examples": len(train_ex),
                     "validation_examples": len(val_ex), "hash": dataset_hash(train_ex + val_ex), **data_stats},
        }
        rep = report.build_report(st["history"], st["evals"], info, s.overfit_ratio, st["best_step"])
        merged_dir = out / "merged" if s.merge and s.method == "lora" else None
        if accelerator.is_main_process:
            unwrapped.eval()
            base.save_model(unwrapped, tokenizer, out, self.model_spec, s.method)
            report.write_json(out / "training_report.json", rep)
            report.plot_losses(rep, out / "loss.png")
            card = report.model_card(rep)
            (out / "model_card.md").write_text(card, encoding="utf-8")
            (out / "README.md").write_text(card, encoding="utf-8")  # replaces peft's empty template card
            if merged_dir is not None:
                base.save_merged(unwrapped, tokenizer, merged_dir)
            shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the run is complete; outputs are written
        accelerator.wait_for_everyone()
        last = st["history"][-1]["loss"] if st["history"] else None
        best = rep.get("best") or {}
        return FineTuneResult(out, merged_dir, step, best.get("step"), best.get("val_loss"), last,
                              st["stopped_early"], rep["warnings"], rep, None if merged_dir else unwrapped, tokenizer)

    def _fingerprint(self, train: list[Example], val: list[Example]) -> str:
        # Everything that changes the result; a resumed run must match it.
        keep = self.settings.model_dump(exclude={"save_every", "keep_checkpoints", "merge"})
        blob = json.dumps([self.model_spec, keep, dataset_hash(train), dataset_hash(val)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _warmup_then_linear(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def _global_batch(n: int, step: int, steps_per_epoch: int, size: int, seed: int) -> list[int]:
    """Example indices of one optimizer step: a seeded shuffle per epoch, wrapping so every batch is full."""
    epoch, pos = divmod(step, steps_per_epoch)
    order = list(range(n))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    return [order[(pos * size + j) % n] for j in range(size)]


def _accumulate_gradients(model, accelerator, chunk: list[Encoded], micro: int, accumulation: int, n_answer: int,
                          pad_id: int) -> float:
    """Backward over this process's micro-batches of one global batch; returns its summed answer-token loss."""
    world = accelerator.num_processes
    loss_sum = 0.0
    for a in range(accumulation):
        idx = a * world + accelerator.process_index
        part = chunk[idx * micro:(idx + 1) * micro]
        # gradients are all-reduced only on the last micro-batch
        sync = nullcontext() if a == accumulation - 1 else accelerator.no_sync(model)
        with sync:
            total = _token_loss_sum(model, part, pad_id, accelerator.device)
            # DDP averages gradients over processes: scaling by `world` gives the mean per answer token
            accelerator.backward(total * world / n_answer)
        loss_sum += total.item()
    return loss_sum


def _collate(part: list[Encoded], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    """Left-padded ids, labels, mask and positions: every sequence ends in the last column, so the
    answer tokens of the whole batch sit in the last few columns."""
    width = max(len(e.input_ids) for e in part)
    ids = torch.full((len(part), width), pad_id, dtype=torch.long)
    labels = torch.full((len(part), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(part), width), dtype=torch.long)
    for i, e in enumerate(part):
        n = len(e.input_ids)
        ids[i, width - n:] = torch.tensor(e.input_ids)
        labels[i, width - n:] = torch.tensor(e.labels)
        mask[i, width - n:] = 1
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids.to(device), labels.to(device), mask.to(device), positions.to(device)


def _token_loss_sum(model, part: list[Encoded], pad_id: int, device) -> torch.Tensor:
    """Summed cross-entropy over the labelled (answer) tokens of a micro-batch; 0 for an empty one."""
    if not part:
        return sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)  # keeps DDP in step
    ids, labels, mask, positions = _collate(part, pad_id, device)
    labelled = (labels != IGNORE).any(0).nonzero()
    # columns from the first answer token on (column 0 has no previous token to predict it from)
    keep = min(ids.size(1) - int(labelled[0]), ids.size(1) - 1) if len(labelled) else 1
    # Logits only for the columns that predict an answer token: the vocabulary projection is a large
    # share of a small model's compute, and prompt positions would be thrown away anyway.
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                   logits_to_keep=keep + 1).logits[:, :-1].float()
    targets = labels[:, -keep:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1),
                                             ignore_index=IGNORE, reduction="sum")


@torch.no_grad()
def _mean_loss(model, encs: list[Encoded], pad_id: int, accelerator, batch_size: int) -> float:
    """Mean loss per answer token over ``encs``, each process taking every world-th example."""
    model.eval()
    mine = encs[accelerator.process_index::accelerator.num_processes]
    total = torch.zeros(2, device=accelerator.device)
    for i in range(0, len(mine), batch_size):
        part = mine[i:i + batch_size]
        total[0] += _token_loss_sum(model, part, pad_id, accelerator.device)
        total[1] += sum(e.answer_tokens for e in part)
    total = accelerator.reduce(total, "sum")
    model.train()
    return (total[0] / total[1].clamp(min=1)).item()


def _train_probe(train: list[Encoded], n: int, cap: int, seed: int) -> list[Encoded]:
    """A fixed sample of training examples, scored like validation so the gap compares like with like."""
    idx = list(range(len(train)))
    random.Random(seed + 7).shuffle(idx)
    return [train[i] for i in sorted(idx[:min(n, cap)])]


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="fine-tuning", unit="step",
                dynamic_ncols=True)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
