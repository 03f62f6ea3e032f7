"""The training time said in advance: the run's planned steps x three passes per example of the batch x the timed
forward pass."""

from __future__ import annotations

import time

from ragtune.config import FinetuneSettings
from ragtune.finetune.estimate import generation_seconds, training_seconds
from ragtune.finetune.train import plan_run


def test_training_seconds_follow_the_runs_plan():
    capped = FinetuneSettings(max_steps=20, batch_size=8, gradient_accumulation=1)
    assert training_seconds(64, capped, 0.5) == 20 * 3 * 8 * 0.5
    small = FinetuneSettings(batch_size=4, gradient_accumulation=2, epochs=2, min_steps=0)
    assert plan_run(80, small, 1).total == 20  # 10 steps an epoch of 8 examples
    assert training_seconds(80, small, 1.0) == 20 * 3 * 8
    assert training_seconds(80, small.model_copy(update={"min_steps": 30}), 1.0) == 30 * 3 * 8  # the floor counts


def test_generation_seconds_time_one_reply_of_the_asked_length():
    asked = []

    def generate(messages, max_new_tokens):
        asked.append(max_new_tokens)
        time.sleep(0.05)
        return "x"

    assert 0.05 <= generation_seconds(generate, [{"role": "user", "content": "q"}]) < 1.0
    assert asked == [1]  # a prefill: one new token
