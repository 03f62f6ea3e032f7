"""The suite's own parallelism (scripts/test.sh, pytest-xdist): each worker keeps to one core, so torch sizes its
thread pool to it instead of two workers' pools fighting over the same cores."""

from __future__ import annotations

import os

import pytest


@pytest.mark.skipif(not os.environ.get("PYTEST_XDIST_WORKER"), reason="runs under pytest-xdist workers only")
def test_an_xdist_worker_is_pinned_to_one_core_before_torch_sizes_its_threads():
    import torch

    assert len(os.sched_getaffinity(0)) == 1
    assert torch.get_num_threads() == 1
