"""Fine-tuning, the loop written out: batches → loss on answer tokens → AdamW → evaluate → checkpoint.

    import ragtune
    result = ragtune.finetune("qa.jsonl", model="smollm2", out="runs/ft")
    ragtune.RAG(None, generator=load_generator(result.out_dir))   # or: ragtune ask "..." --model runs/ft

``FineTuner.fit`` is three stages, as a torchtune recipe: ``setup`` (data, model, optimizer, plan, resume),
``train`` (the one loop, shared by LoRA and full fine-tuning: they differ in what trains, not in the loop) and
``save`` (best weights back in, model folder, report). Runs in one process or several (``torchrun
--nproc_per_node 2 -m ragtune.cli.main finetune ...``): ``accelerate.Accelerator`` wraps the model for
data-parallel training and every process sees the same seeded example order, taking its own slice of each
batch. The data position is the optimizer step, so a resumed run continues with exactly the batch it would
have seen next.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save

from ragtune.atomic import atomic_write
from ragtune.config import FinetuneSettings, load_settings
from ragtune.errors import ConfigError, InputError, ModelError
from ragtune.finetune import base, checkpoint, report
from ragtune.finetune.batches import accumulate_gradients, global_batch, mean_loss
from ragtune.finetune.data import dataset_hash, load_examples, split_examples
from ragtune.finetune.divergence import check_divergence
from ragtune.finetune.encode import Encoded, encode_examples, ensure_chat_template
from ragtune.finetune.memory import Shape, budget_bytes, hand_back_large_blocks
from ragtune.hardware import bf16_native
from ragtune.types import Example

# Learning rate when the settings leave it unset: LoRA adapters start at zero and need a larger step than
# full fine-tuning, which moves pretrained weights (1e-3 would wreck them).
DEFAULT_LR = {"lora": 1e-3, "full": 5e-5}
EVALUATIONS_PER_RUN = 10  # when eval_every is unset


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


@dataclass
class TrainState:
    """The loop's position and what it has seen: saved in every checkpoint, restored on resume."""

    fingerprint: str
    step: int = 0
    best_val: float | None = None
    best_step: int | None = None
    bad_evals: int = 0  # evaluations since the best one (early stopping counts these)
    history: list[dict[str, float]] = field(default_factory=list)  # step, loss, answer_tokens, lr per step
    evals: list[dict[str, float]] = field(default_factory=list)  # step, val_loss, train_loss per evaluation
    tokens: int = 0
    seconds: float = 0.0
    stopped_early: bool = False

    @classmethod
    def restored(cls, saved: dict[str, Any]) -> TrainState:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})


@dataclass
class Plan:
    """How long the run is, derived from the data size and the settings (docs/finetune.md, "Defaults")."""

    global_batch: int
    steps_per_epoch: int
    total: int
    warmup: int
    eval_every: int
    learning_rate: float


@dataclass
class Data:
    """The examples and their encodings."""

    source: str
    train: list[Example]
    val: list[Example]
    train_enc: list[Encoded]
    val_enc: list[Encoded]
    stats: dict[str, int]
    about: dict[str, Any] = field(default_factory=dict)  # what the data is (e.g. synthetic), for the report


@dataclass
class Run:
    """Everything ``setup`` builds and ``train`` / ``save`` use."""

    model: Any
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any
    accelerator: Any
    data: Data
    plan: Plan
    state: TrainState
    out: Path
    bf16: bool
    budget: int | None = None  # activation bytes one forward/backward may hold (None: no limit)

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"


def finetune(dataset: str | Path | list[Example], model: str | None = None, out: str | Path = "runs/ft",
             method: str | None = None, validation: str | Path | list[Example] | None = None, resume: bool = False,
             **hyperparameters: Any) -> FineTuneResult:
    """Fine-tune ``model`` on ``dataset`` and write the result to ``out``; keyword arguments are
    ``[finetune]`` settings (epochs, learning_rate, batch_size, max_seq_tokens, lora_r, ...). Unset, the model
    and settings are those of ragtune.toml / RAGTUNE_* (generator.model, [finetune]), never a second default."""
    loaded = load_settings()
    return FineTuner(model or loaded.generator.model, method=method, settings=loaded.finetune,
                     **hyperparameters).fit(dataset, validation=validation, out=out,
                                                                  resume=resume)


def plan_run(n_train: int, s: FinetuneSettings, world: int) -> Plan:
    """Steps, warm-up, evaluation interval and learning rate for ``n_train`` examples.

    ``epochs`` passes over the data, but never fewer than ``min_steps`` optimizer steps: a small data set
    (24 examples are 3 steps an epoch) gets enough updates to learn, and early stopping on validation loss
    (with the best weights kept) guards the extra epochs against overfitting."""
    size = s.batch_size * world * s.gradient_accumulation
    per_epoch = math.ceil(n_train / size)
    total = max(math.ceil(s.epochs * per_epoch), s.min_steps)
    total = min(total, s.max_steps) if s.max_steps else total
    every = s.eval_every or max(1, math.ceil(total / EVALUATIONS_PER_RUN))
    lr = s.learning_rate if s.learning_rate is not None else DEFAULT_LR[s.method]
    return Plan(size, per_epoch, total, int(total * s.warmup_fraction), every, lr)


class FineTuner:
    """A model spec plus settings; ``fit`` trains on a dataset and saves a loadable folder."""

    def __init__(self, model: str, method: str | None = None, settings: FinetuneSettings | None = None,
                 device: str = "cpu", **overrides: Any):
        base_settings = settings or FinetuneSettings()  # the caller's settings, passed down (never re-read here)
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
            out: str | Path = "runs/ft", resume: bool = False, about: dict[str, Any] | None = None) -> FineTuneResult:
        """Train, keep the best weights, and write the model folder, report, plot and card to ``out``; ``about``
        (e.g. ``{"synthetic": True, "origin": ...}``) goes into the report's ``data`` section."""
        run = self.setup(train, validation, Path(out), resume)
        run.data.about = dict(about or {})
        self.train(run)
        return self.save(run)

    def setup(self, train: str | Path | list[Example], validation: str | Path | list[Example] | None,
              out: Path, resume: bool) -> Run:
        """Data, model, optimizer and plan; the state of the newest checkpoint when resuming."""
        try:
            from accelerate import Accelerator
        except ImportError:
            raise ModelError("fine-tuning needs accelerate and peft; pip install 'ragtune[finetune]'") from None
        s = self.settings
        accelerator = Accelerator(cpu=self.device == "cpu")
        train_ex = load_examples(train) if not isinstance(train, list) else train
        if validation is None:
            train_ex, val_ex = split_examples(train_ex, s.validation_fraction, s.seed)
        else:
            val_ex = load_examples(validation) if not isinstance(validation, list) else validation
        start = checkpoint.latest(out / "checkpoints")
        if start is not None and not resume:
            raise InputError(f"{out}: holds checkpoints of an earlier run; pass --resume to continue it or "
                             "choose another --out")
        _seed_everything(s.seed)
        model, tokenizer = base.load_base(self.model_spec, device=str(accelerator.device))
        data = self._encode(tokenizer, train, train_ex, val_ex)
        model = base.prepare(model, s.method, s.lora_r, s.lora_alpha, s.lora_dropout, s.lora_target_modules)
        model.config.use_cache = False
        plan = plan_run(len(data.train_enc), s, accelerator.num_processes)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=plan.learning_rate,
                                      weight_decay=s.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_linear(plan.warmup, plan.total))
        model, optimizer = accelerator.prepare(model, optimizer)
        bf16 = s.precision == "bf16" or (s.precision == "auto" and bf16_native(str(accelerator.device)))
        budget = budget_bytes(s.activation_memory_mb)
        shape = Shape.of(model)
        if budget is not None and any(shape.cost([e]) > budget for e in data.train_enc):
            # some example is checkpointed: its backward frees and reallocates every layer's insides, which glibc
            # would keep resident; a fixed mmap threshold hands them back. Not otherwise: it cost 25-70% of a
            # short-example step here (fresh zeroed pages for every large tensor)
            hand_back_large_blocks()
        run = Run(model, tokenizer, optimizer, scheduler, accelerator, data, plan,
                  TrainState(self._fingerprint(train_ex, val_ex)), out, bf16, budget)
        if start is not None:
            self._resume(run, start)
        return run

    def _encode(self, tokenizer, source: Any, train_ex: list[Example], val_ex: list[Example]) -> Data:
        s = self.settings
        ensure_chat_template(tokenizer)
        train_enc, stats = encode_examples(tokenizer, train_ex, s.max_seq_tokens, s.loss_on)
        val_enc, _ = encode_examples(tokenizer, val_ex, s.max_seq_tokens, s.loss_on)
        name = str(source) if not isinstance(source, list) else "examples"
        if not train_enc:
            raise InputError(f"{name}: no example has an answer token within max_seq_tokens={s.max_seq_tokens}; "
                             "raise it")
        return Data(name, train_ex, val_ex, train_enc, val_enc, stats)

    def _resume(self, run: Run, start: Path) -> None:
        # another run's checkpoint (other data or settings) is refused before its weights touch the model
        saved = checkpoint.restore(start, run.model, run.optimizer, run.scheduler, run.accelerator,
                                   fingerprint=run.state.fingerprint)
        run.state = TrainState.restored(saved)
        if run.accelerator.is_main_process and (start / "best.safetensors").is_file():
            # the best weights as of this checkpoint (a later, lost "best" is recomputed identically)
            (run.ckpt_dir / "best").mkdir(exist_ok=True)
            shutil.copyfile(start / "best.safetensors", run.ckpt_dir / "best" / "trainable.safetensors")

    def train(self, run: Run) -> None:
        """The loop: one global batch per optimizer step, evaluation and checkpoints at their intervals."""
        s, st, plan, acc = self.settings, run.state, run.plan, run.accelerator
        data, pad_id = run.data, run.tokenizer.pad_token_id
        params = [p for p in run.model.parameters() if p.requires_grad]
        bar = _progress(plan.total, st.step, acc.is_main_process)
        try:
            t0, tokens_at_t0 = time.perf_counter(), st.tokens
            while st.step < plan.total and not st.stopped_early:
                run.model.train()
                chunk = [data.train_enc[i] for i in global_batch(len(data.train_enc), st.step, plan.steps_per_epoch,
                                                                 plan.global_batch, s.seed)]
                n_answer = sum(e.answer_tokens for e in chunk)  # every process computes the same total
                loss_sum = accumulate_gradients(run.model, acc, chunk, s.batch_size, s.gradient_accumulation, n_answer,
                                                pad_id, run.bf16, run.budget)
                acc.clip_grad_norm_(params, s.max_grad_norm)
                run.optimizer.step()
                run.scheduler.step()
                run.optimizer.zero_grad(set_to_none=True)
                st.step += 1
                loss = acc.reduce(torch.tensor(loss_sum, device=acc.device), "sum").item() / n_answer
                st.tokens += sum(len(e.input_ids) for e in chunk)
                st.history.append({"step": st.step, "loss": loss, "answer_tokens": n_answer,
                                   "lr": run.scheduler.get_last_lr()[0]})
                check_divergence([h["loss"] for h in st.history], plan.learning_rate)
                tps = (st.tokens - tokens_at_t0) / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:.0f}", best_val=_fmt(st.best_val))
                bar.update(1)
                if data.val_enc and (st.step % plan.eval_every == 0 or st.step == plan.total):
                    self._evaluate(run)
                if st.step % s.save_every == 0 and st.step < plan.total:
                    st.seconds += time.perf_counter() - t0  # checkpoint writing is not training time
                    self._checkpoint(run)
                    t0, tokens_at_t0 = time.perf_counter(), st.tokens
        finally:
            bar.close()
        st.seconds += time.perf_counter() - t0

    def _checkpoint(self, run: Run) -> None:
        best = run.ckpt_dir / "best" / "trainable.safetensors"
        checkpoint.save(run.ckpt_dir, run.state.step, run.model, run.optimizer, run.scheduler, asdict(run.state),
                        run.accelerator, self.settings.keep_checkpoints, {"best.safetensors": best})

    def _evaluate(self, run: Run) -> None:
        """Validation loss beside the training loss since the evaluation before (`interval_loss`); keep the best
        weights; count evaluations without improvement."""
        s, st, acc = self.settings, run.state, run.accelerator
        pad_id = run.tokenizer.pad_token_id
        val = mean_loss(run.model, run.data.val_enc[:s.eval_max_examples], pad_id, acc, s.batch_size, run.bf16,
                        run.budget)
        since = int(st.evals[-1]["step"]) if st.evals else 0
        st.evals.append({"step": st.step, "val_loss": val, "train_loss": interval_loss(st.history, since)})
        if st.best_val is None or val < st.best_val - s.min_delta:
            st.best_val, st.best_step, st.bad_evals = val, st.step, 0
            if acc.is_main_process:
                best = run.ckpt_dir / "best"
                best.mkdir(parents=True, exist_ok=True)
                atomic_write(best / "trainable.safetensors",
                             save(checkpoint.trainable_state(acc.unwrap_model(run.model))))
        else:
            st.bad_evals += 1
            if s.patience and st.bad_evals >= s.patience:
                st.stopped_early = True
        acc.wait_for_everyone()

    def save(self, run: Run) -> FineTuneResult:
        """Best weights back in, then adapter/model, merged folder, report, plot and card (main process)."""
        s, st, acc, out = self.settings, run.state, run.accelerator, run.out
        unwrapped = acc.unwrap_model(run.model)
        best_file = run.ckpt_dir / "best" / "trainable.safetensors"
        if st.best_step is not None and best_file.is_file():
            checkpoint.load_trainable(unwrapped, load_file(str(best_file)))
        rep = report.build_report(st.history, st.evals, self._info(run), s.overfit_ratio, st.best_step)
        merged_dir = out / "merged" if s.merge and s.method == "lora" else None
        if acc.is_main_process:
            unwrapped.eval()
            base.save_model(unwrapped, run.tokenizer, out, self.model_spec, s.method)
            report.write_report(out, rep)
            report.plot_losses(rep, out / "loss.png")
            card = report.model_card(rep)
            (out / "model_card.md").write_text(card, encoding="utf-8")
            (out / "README.md").write_text(card, encoding="utf-8")  # replaces peft's empty template card
            if merged_dir is not None:
                base.save_merged(unwrapped, run.tokenizer, merged_dir)
            shutil.rmtree(run.ckpt_dir, ignore_errors=True)  # the run is complete; outputs are written
        acc.wait_for_everyone()
        last = st.history[-1]["loss"] if st.history else None
        best = rep.get("best") or {}
        return FineTuneResult(out, merged_dir, st.step, best.get("step"), best.get("val_loss"), last,
                              st.stopped_early, rep["warnings"], rep, None if merged_dir else unwrapped,
                              run.tokenizer)

    def _info(self, run: Run) -> dict[str, Any]:
        s, st, d = self.settings, run.state, run.data
        return {
            "base_model": self.model_spec, "method": s.method, "steps": st.step, "stopped_early": st.stopped_early,
            "processes": run.accelerator.num_processes, "seconds": round(st.seconds, 2),
            "tokens_per_second": st.tokens / max(st.seconds, 1e-9), "tokens": st.tokens,
            "precision": "bf16 autocast" if run.bf16 else "fp32",
            # the values used: an unset learning rate or evaluation interval shows what the plan chose
            "plan": asdict(run.plan), "hyperparameters": {**s.model_dump(), "learning_rate": run.plan.learning_rate,
                                                          "eval_every": run.plan.eval_every},
            "data": {"train_source": d.source, "train_examples": len(d.train), "validation_examples": len(d.val),
                     "hash": dataset_hash(d.train + d.val), **d.stats, **d.about},
        }

    def _fingerprint(self, train: list[Example], val: list[Example]) -> str:
        # Everything that changes the result; a resumed run must match it.
        # (not the activation budget: it changes how a batch is cut into pieces, not the gradient)
        keep = self.settings.model_dump(exclude={"save_every", "keep_checkpoints", "merge", "activation_memory_mb"})
        blob = json.dumps([self.model_spec, keep, dataset_hash(train), dataset_hash(val)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def interval_loss(history: list[dict[str, float]], since: int) -> float:
    """The training loss per answer token over the optimizer steps after step ``since``: what the optimizer
    saw, as Hugging Face's Trainer logs it. It used to be a forward pass over a sample of training examples
    at each evaluation, which cost as much as the validation pass and changed no weight (lora_dropout is 0 by
    default, so the two differ only by the weights moving within the interval)."""
    steps = [h for h in history if h["step"] > since] or history[-1:]
    # steps resumed from a checkpoint written before answer_tokens was recorded: every step weighs alike
    recorded = all("answer_tokens" in h for h in steps)
    weights = [h["answer_tokens"] if recorded else 1 for h in steps]
    return sum(h["loss"] * w for h, w in zip(steps, weights)) / max(sum(weights), 1)


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


def _progress(total: int, initial: int, enabled: bool):
    from ragtune.finetune.progress import TrainProgress

    return TrainProgress(total, initial, enabled)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
