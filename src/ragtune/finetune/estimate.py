"""Training time in advance, from a short measurement of this machine (`ragtune choose --plan`, and
`ragtune finetune --kb --raft` before it trains).

One training example of the run's size is put through the trainer's own step (`batches.accumulate_gradients`:
forward and backward, with the activation budget and checkpointing the run will use) on the model as it will be
trained (fp32, LoRA-wrapped); the second pass is timed, the first warms up. A run is its planned steps
(`train.plan_run`, as the run plans them) x the examples of a global batch x that time, plus its evaluations
(the validation examples' loss, a forward pass each, counted as a third of a training pass). Model loading
and checkpoint writing are not counted, and early stopping can end a run sooner.

Timing the generator's prefill instead (what this module did before) read a third of the real time: the
inference engine is some 2.4x faster than a training forward pass, and a pass with backward is about three
forwards (RAFT from a kb measured 4.0 min of training against 1.6 estimated).
"""

from __future__ import annotations

import time
from typing import Any

from ragtune.config import FinetuneSettings
from ragtune.errors import ModelError

FORWARD_SHARE = 1 / 3  # an evaluation forward pass against a training pass (forward + backward)


def generation_seconds(generate: Any, messages: list[dict[str, str]], max_new_tokens: int = 1) -> float:
    """Wall time of one reply of ``max_new_tokens`` tokens (1: the prompt's prefill, a forward pass)."""
    started = time.perf_counter()
    generate(messages, max_new_tokens=max_new_tokens)
    return time.perf_counter() - started


def median_example(examples: list[Any]) -> list[dict[str, str]]:
    """The messages of the example of median length (characters): the one whose training pass is timed."""
    ordered = sorted(examples, key=lambda e: sum(len(m["content"]) for m in e.messages))
    return ordered[len(ordered) // 2].messages


def example_seconds(model_spec: str, settings: FinetuneSettings, prompts: list[list[dict[str, str]]],
                    device: str = "cpu") -> list[float]:
    """Seconds of one training pass (forward + backward, the trainer's step) per chat in ``prompts``, each a
    training example's messages with its answer, on ``model_spec`` loaded and wrapped as the run will be."""
    try:
        from accelerate import Accelerator
    except ImportError:
        raise ModelError("estimating training time needs accelerate and peft; pip install 'ragtune[finetune]'"
                         ) from None

    from ragtune.finetune import base
    from ragtune.finetune.batches import accumulate_gradients
    from ragtune.finetune.encode import encode_chat, ensure_chat_template
    from ragtune.finetune.memory import budget_bytes
    from ragtune.hardware import bf16_native

    s = settings
    accelerator = Accelerator(cpu=device == "cpu")
    model, tokenizer = base.load_base(base.resolve_spec(model_spec), device=str(accelerator.device))
    ensure_chat_template(tokenizer)
    model = base.prepare(model, s.method, s.lora_r, s.lora_alpha, s.lora_dropout, s.lora_target_modules)
    model.config.use_cache = False
    model = accelerator.prepare(model)
    model.train()
    bf16 = s.precision == "bf16" or (s.precision == "auto" and bf16_native(str(accelerator.device)))
    budget = budget_bytes(s.activation_memory_mb)

    def once(messages: list[dict[str, str]]) -> float:
        enc = encode_chat(tokenizer, messages, s.max_seq_tokens, s.loss_on)
        started = time.perf_counter()
        accumulate_gradients(model, accelerator, [enc], 1, 1, max(enc.answer_tokens, 1), tokenizer.pad_token_id,
                             bf16, budget)
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    once(prompts[0])  # warm-up: allocator, kernels' first calls
    return [once(p) for p in prompts]  # the model is freed with this frame, before the run loads its own


def training_seconds(train_examples: int, settings: FinetuneSettings, per_example: float,
                     validation_examples: int = 0) -> float:
    """Seconds the run would train on ``train_examples`` examples at ``per_example`` seconds per training pass,
    its evaluations of ``validation_examples`` included."""
    from ragtune.finetune.train import plan_run

    plan = plan_run(max(train_examples, 1), settings, 1)
    steps = plan.total * settings.batch_size * settings.gradient_accumulation * per_example
    if validation_examples <= 0:
        return steps
    evaluations = -(-plan.total // plan.eval_every)  # every eval_every steps, and at the last
    looked_at = min(validation_examples, settings.eval_max_examples)
    return steps + evaluations * looked_at * per_example * FORWARD_SHARE
