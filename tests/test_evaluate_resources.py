"""Each piece of work's own peak memory: the peak tracker is reset per measurement, earlier models are freed."""

from __future__ import annotations

import weakref

import numpy as np
import pytest

from ragtune.evaluate.resources import kernel_peak_mb, measure, release, reset_peak


def test_a_measurement_reports_its_own_peak_not_the_process_peak_so_far():
    if not reset_peak() or kernel_peak_mb() is None:
        pytest.skip("no resettable peak tracker here (not Linux)")
    big = np.ones(400 << 17)  # 400 MiB touched, then freed: the process's peak so far holds it
    del big
    release()
    process_peak = kernel_peak_mb()
    with measure() as own:
        small = np.ones(40 << 17)  # 40 MiB
    del small
    assert own["peak_rss_mb"] < process_peak - 200  # the earlier 400 MiB is not charged to this work
    with measure() as again:
        big = np.ones(400 << 17)
    del big
    assert again["peak_rss_mb"] > own["peak_rss_mb"] + 200  # and a peak inside is seen, though freed at once


def test_the_sampler_alone_sees_a_peak_inside(monkeypatch):
    """Without the kernel's tracker, the background sampler must catch a peak that comes and goes inside the
    block. The process's RSS is stood in for: in a long-lived test worker a real 200 MiB block once left it
    unchanged (memory already resident), which says nothing about the sampler."""
    import time

    from ragtune.evaluate import resources

    monkeypatch.setattr(resources, "reset_peak", lambda: False)  # as on a system without the kernel tracker
    level = {"mb": 100.0}
    monkeypatch.setattr(resources, "rss_mb", lambda: level["mb"])
    with measure(interval=0.01) as usage:
        level["mb"] = 400.0  # the peak, seen only while the block runs
        time.sleep(0.3)
        level["mb"] = 120.0
    assert usage["peak_rss_mb"] == 400.0  # neither the RSS at entry (100) nor at exit (120)


def test_an_earlier_contestants_model_is_freed_before_the_next_one_loads(tiny_lm_dir, tmp_path):
    from ragtune.config import load_settings
    from ragtune.evaluate.qa import QASet
    from ragtune.evaluate.run import EvalRun
    from ragtune.evaluate.store import PredictionLog

    settings = load_settings(overrides={"generator.backend": "transformers"})
    run = EvalRun(QASet("q", []), settings, tmp_path, {"base": str(tiny_lm_dir), "finetuned": str(tiny_lm_dir)},
                  None, ["base", "finetuned"], set(), PredictionLog(tmp_path / "p.jsonl"))
    first = weakref.ref(run.generator("base"))
    assert run.generator("base") is first()  # loaded once while it is used
    run.keep_only("finetuned")
    assert first() is None  # gone before the next contestant is measured
    assert run.generator("finetuned") is not None and list(run.gens) == ["finetuned"]
