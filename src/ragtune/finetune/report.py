"""What a run tells its user: training_report.json, loss.png and model_card.md.

The report's schema is kept here, written by `write_report` and read back by `read_report` and `training_cost`
(what evaluation and `choose` take from it): top-level ``seconds``, ``tokens``, ``steps``, ``stopped_early``,
``warnings``, and ``data.train_examples``; ``data.synthetic`` is true (with ``data.origin`` saying from what) when
the training pairs were synthesised, not written by a person (`finetune --kb KB --raft` with no dataset).

Generalisation gap = validation loss − train loss at the best checkpoint, both mean loss per answer token: the
validation loss measured there (eval mode), the train loss the optimizer saw over the steps since the evaluation
before (`train.interval_loss`). Overfitting is flagged when validation loss ends
``overfit_ratio`` times above its best while train loss kept falling, or when validation loss is
``overfit_ratio`` times the train loss at the best checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragtune.atomic import atomic_open, atomic_write_json

REPORT_FILE = "training_report.json"


def build_report(history: list[dict[str, Any]], evals: list[dict[str, Any]], info: dict[str, Any],
                 overfit_ratio: float, best_step: int | None = None) -> dict[str, Any]:
    """The report: settings, data, losses over time, the kept (best) checkpoint, gap and warnings."""
    warnings: list[str] = []
    kept = [e for e in evals if e["step"] == best_step]
    best = kept[0] if kept else (min(evals, key=lambda e: e["val_loss"]) if evals else None)
    gap = None
    if best:
        gap = best["val_loss"] - best["train_loss"]
        last = evals[-1]
        if last["val_loss"] > best["val_loss"] * overfit_ratio and last["train_loss"] < best["train_loss"]:
            warnings.append(f"overfitting: validation loss rose from {best['val_loss']:.3f} (step {best['step']}) "
                            f"to {last['val_loss']:.3f} while train loss fell; the best checkpoint was kept")
        if best["train_loss"] > 0 and best["val_loss"] > best["train_loss"] * overfit_ratio:
            warnings.append(f"generalisation gap: validation loss {best['val_loss']:.3f} vs train "
                            f"{best['train_loss']:.3f}; more or more varied data (or `ragtune synth`) would help")
    else:
        warnings.append("no validation set: overfitting cannot be measured; pass --validation or keep "
                        "validation_fraction > 0")
    if info.get("data", {}).get("truncated"):
        warnings.append(f"{info['data']['truncated']} examples were longer than max_seq_tokens and were cut; "
                        "raise max_seq_tokens or shorten them")
    if info.get("data", {}).get("no_answer"):
        warnings.append(f"{info['data']['no_answer']} examples had no answer token left after truncation "
                        "and were not trained on")
    return {
        **info,
        "best": best,
        "generalisation_gap": gap,
        "overfitting": any(w.startswith("overfitting") for w in warnings),
        "warnings": warnings,
        "history": history,
        "evaluations": evals,
    }


def write_report(folder: Path, report: dict[str, Any]) -> Path:
    """``folder/training_report.json``, atomically."""
    atomic_write_json(Path(folder) / REPORT_FILE, report)
    return Path(folder) / REPORT_FILE


def read_report(folder: str | Path) -> dict[str, Any] | None:
    """The report a training run wrote into ``folder``; None when there is none (not trained by ragtune, or not
    finished)."""
    path = Path(folder) / REPORT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def training_cost(folder: Any) -> dict[str, Any] | None:
    """Training time, tokens and examples of the run that made a model folder, when ragtune trained it."""
    report = read_report(folder) if isinstance(folder, (str, Path)) and Path(folder).is_dir() else None
    if report is None:
        return None
    seconds, tokens = report.get("seconds"), report.get("tokens")
    return {"seconds": seconds, "tokens": tokens, "examples": (report.get("data") or {}).get("train_examples"),
            "tokens_per_second": tokens / seconds if seconds and tokens else None,
            "report": str(Path(folder) / REPORT_FILE)}


def plot_losses(report: dict[str, Any], path: Path) -> None:
    """Train loss per step (light), and train/validation loss at each evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    hist = report["history"]
    if hist:
        ax.plot([h["step"] for h in hist], [h["loss"] for h in hist], color="tab:blue", alpha=0.3,
                label="train (per step)")
    evals = report["evaluations"]
    if evals:
        steps = [e["step"] for e in evals]
        ax.plot(steps, [e["train_loss"] for e in evals], "o-", color="tab:blue", label="train (since the last evaluation)")
        ax.plot(steps, [e["val_loss"] for e in evals], "o-", color="tab:orange", label="validation")
    if report.get("best"):
        ax.axvline(report["best"]["step"], color="gray", linestyle="--", label="best checkpoint")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per answer token")
    ax.set_title(f"{report.get('method', '')} fine-tuning of {report.get('base_model', '')}")
    ax.legend()
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)


def model_card(report: dict[str, Any]) -> str:
    """A short markdown card: base model, data, hyper-parameters, metrics, warnings."""
    hp = report.get("hyperparameters", {})
    best = report.get("best") or {}
    data = report.get("data", {})
    lines = [
        f"# Fine-tuned {report.get('base_model')}",
        "",
        f"- base model: `{report.get('base_model')}`",
        f"- method: {report.get('method')}",
        f"- data: {data.get('train_examples')} train / {data.get('validation_examples')} validation examples, "
        f"sha256 `{data.get('hash')}` ({data.get('origin') or data.get('train_source')})"
        + (", **synthetic**" if data.get("synthetic") else ""),
        f"- steps: {report.get('steps')} (best at {best.get('step', '-')}), stopped early: "
        f"{report.get('stopped_early')}",
        f"- best validation loss: {_fmt(best.get('val_loss'))}, train loss there: {_fmt(best.get('train_loss'))}, "
        f"gap: {_fmt(report.get('generalisation_gap'))}",
        f"- throughput: {_fmt(report.get('tokens_per_second'), 1)} tokens/s over {report.get('processes', 1)} "
        "process(es)",
        "",
        "## Hyper-parameters",
        "",
        *[f"- {k}: {v}" for k, v in sorted(hp.items())],
        "",
        "## Use",
        "",
        "```",
        "ragtune ask \"your question\" --model THIS_FOLDER",
        "```",
    ]
    if report.get("warnings"):
        lines += ["", "## Warnings", "", *[f"- {w}" for w in report["warnings"]]]
    return "\n".join(lines) + "\n"


def _fmt(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"
