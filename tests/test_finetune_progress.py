"""Training progress written to a log (not a terminal): plain lines with steps, time left and the stats."""

from __future__ import annotations

from ragtune.finetune import progress
from ragtune.finetune.progress import TrainProgress


def test_a_log_gets_plain_progress_lines_and_a_resumed_run_counts_its_own_pace(capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    bar = TrainProgress(total=4, initial=1, show=True)  # resumed after step 1
    bar.set_postfix(loss="0.512")
    bar.update(1)
    bar.update(2)
    bar.close()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fine-tuning:")]
    assert len(lines) == 2 and lines[0].startswith("fine-tuning: 2/4 steps") and lines[0].endswith("loss=0.512")
    assert lines[-1].startswith("fine-tuning: 4/4 steps") and "about 0.0 min left" in lines[-1]


def test_hidden_progress_prints_nothing(capsys):
    bar = TrainProgress(total=2, initial=0, show=False)
    bar.update(2)
    bar.close()
    assert "fine-tuning" not in capsys.readouterr().err
