"""The training time said in advance: the run's planned steps x the examples of a global batch x one timed
training pass (the trainer's own step), plus its evaluations."""

from __future__ import annotations

import time

from ragtune.config import FinetuneSettings
from ragtune.finetune.estimate import FORWARD_SHARE, example_seconds, generation_seconds, training_seconds
from ragtune.finetune.train import plan_run


def test_training_seconds_follow_the_runs_plan():
    capped = FinetuneSettings(max_steps=20, batch_size=8, gradient_accumulation=1)
    assert training_seconds(64, capped, 0.5) == 20 * 8 * 0.5
    small = FinetuneSettings(batch_size=4, gradient_accumulation=2, epochs=2, min_steps=0)
    assert plan_run(80, small, 1).total == 20  # 10 steps an epoch of 8 examples
    assert training_seconds(80, small, 1.0) == 20 * 8
    assert training_seconds(80, small.model_copy(update={"min_steps": 30}), 1.0) == 30 * 8  # the floor counts


def test_evaluations_count_the_validation_examples_as_forward_passes():
    s = FinetuneSettings(batch_size=4, gradient_accumulation=2, epochs=2, min_steps=0, eval_every=3)
    # 20 steps, evaluated at 3, 6, ..., 18 and at the last: 7 times, each 5 validation examples
    assert training_seconds(80, s, 1.0, validation_examples=5) == 20 * 8 + 7 * 5 * FORWARD_SHARE
    capped = s.model_copy(update={"eval_max_examples": 2})
    assert training_seconds(80, capped, 1.0, validation_examples=5) == 20 * 8 + 7 * 2 * FORWARD_SHARE


def test_a_training_pass_is_timed_through_the_trainers_step_and_grows_with_the_prompt(tiny_lm_dir):
    s = FinetuneSettings(max_seq_tokens=1000, activation_memory_mb=0)
    short = [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": "Arlen."}]
    long = [{"role": "user", "content": "the harbour office " * 300}, {"role": "assistant", "content": "Arlen."}]
    best_short, best_long = float("inf"), float("inf")
    for _ in range(3):  # the best of three: a shared machine's hiccup is not the prompt's cost
        t_short, t_long = example_seconds(str(tiny_lm_dir), s, [short, long])
        best_short, best_long = min(best_short, t_short), min(best_long, t_long)
    assert 0 < best_short < best_long


def test_generation_seconds_time_one_reply_of_the_asked_length():
    asked = []

    def generate(messages, max_new_tokens):
        asked.append(max_new_tokens)
        time.sleep(0.05)
        return "x"

    assert 0.05 <= generation_seconds(generate, [{"role": "user", "content": "q"}]) < 1.0
    assert asked == [1]  # a prefill: one new token
