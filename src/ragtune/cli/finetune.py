"""`ragtune data check`, `ragtune finetune` and `ragtune synth`: thin shells over ragtune.finetune."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

data_app = typer.Typer(help="Inspect fine-tuning datasets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    app.command("finetune")(finetune_cmd)
    app.command("synth")(synth_cmd)


@data_app.command("check")
def check_cmd(
    dataset: Path = typer.Argument(..., help="JSONL/CSV dataset, or a folder of .txt/.md documents"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="count tokens with this model "
                                        "(default: generator.model)"),
    validation: Optional[Path] = typer.Option(None, "--validation", help="a validation file, checked for leakage"),
    max_seq_tokens: Optional[int] = typer.Option(None, "--max-seq-tokens", help="over-long limit (default: "
                                                 "finetune.max_seq_tokens)"),
    no_tokens: bool = typer.Option(False, "--no-tokens", help="skip token counting (no model needed)"),
    kb: Optional[Path] = typer.Option(None, "--kb", help="also count the examples whose gold passage is in this "
                                      "knowledge base (what --raft needs)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Validate a dataset: bad rows with line numbers, lengths, duplicates, leakage, answers, size.
    Exits 1 when there are errors."""
    from ragtune.config import load_settings
    from ragtune.errors import InputError
    from ragtune.finetune.check import check_dataset

    settings = load_settings()
    tokenizer = None
    if not no_tokens:
        from ragtune.finetune.base import load_tokenizer

        tokenizer = load_tokenizer(model or settings.generator.model)
    report = check_dataset(dataset, validation, tokenizer, max_seq_tokens or settings.finetune.max_seq_tokens)
    if kb is not None:
        from ragtune.finetune.data import read_rows
        from ragtune.finetune.raft import gold_coverage
        from ragtune.index.knowledge_base import KnowledgeBase

        if not kb.is_dir():
            raise InputError(f"--kb {kb}: no such knowledge-base folder; build it with `ragtune ingest DOCS --kb {kb}`")
        settings = load_settings(kb)
        report.stats["raft"] = gold_coverage(read_rows(dataset)[0], KnowledgeBase(kb, settings=settings), settings)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print_check(report)
    if not report.ok:  # the report is the output (stdout); the verdict is an error line on stderr, exit 1
        first = report.errors[0]
        raise InputError(f"{dataset}: {len(report.errors)} error(s) in the dataset, first: {first.kind}: "
                         f"{first.message.splitlines()[0] if first.message else ''}; fix them (the report lists "
                         "each) and re-run `ragtune data check`")


def _print_check(report) -> None:
    from ragtune.cli.output import console as make_console

    console = make_console(highlight=True)
    style = {"error": "bold red", "warning": "yellow", "info": "green"}
    console.print(f"[bold]{report.dataset}[/]: {report.examples} examples"
                  + (f", {report.validation_examples} validation" if report.validation_examples else ""))
    for f in sorted(report.findings, key=lambda f: ["error", "warning", "info"].index(f.severity)):
        console.print(f"[{style[f.severity]}]{f.severity:7}[/] {f.kind}: {f.message}", highlight=False)
        for where in f.where[:10]:
            console.print(f"         {where}", highlight=False)
        if len(f.where) > 10:
            console.print(f"         ... and {len(f.where) - 10} more (--json lists all)")
    if "raft" in report.stats:
        r = report.stats["raft"]
        console.print(f"RAFT: {r['with_gold_passage']} of {r['examples']} examples have a gold passage in the kb "
                      f"({r['by_source']} by their source, {r['by_answer_text']} by the answer's text)")
    if "tokens" in report.stats:
        t = report.stats["tokens"]
        console.print(f"tokens per example: mean {t['mean']}, p95 {t['p95']}, max {t['max']} (limit {t['limit']})")
    verdict = "[bold green]OK[/]" if report.ok else f"[bold red]{len(report.errors)} error(s)[/]"
    console.print(verdict)


def finetune_cmd(
    dataset: Optional[Path] = typer.Argument(None, help="JSONL/CSV (messages, prompt/completion or "
                                             "question/answer) or .txt/.md documents; none with --kb KB --raft: "
                                             "pairs synthesised from the knowledge base"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="alias (smollm2, gemma3-270m), HF folder, "
                                        ".gguf or adapter folder (default: generator.model)"),
    method: Optional[str] = typer.Option(None, "--method", help="lora or full (default: finetune.method)"),
    out: Path = typer.Option(Path("runs/ft"), "--out", "-o", help="output folder"),
    validation: Optional[Path] = typer.Option(None, "--validation", help="validation file (default: a seeded "
                                              "split of DATASET)"),
    epochs: Optional[float] = typer.Option(None, "--epochs", help="passes over the data (default: "
                                           "finetune.epochs; with --raft, raft.epochs)"),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    learning_rate: Optional[float] = typer.Option(None, "--lr", "--learning-rate"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="examples per process per micro-batch"),
    gradient_accumulation: Optional[int] = typer.Option(None, "--grad-accum"),
    max_seq_tokens: Optional[int] = typer.Option(None, "--max-seq-tokens"),
    lora_r: Optional[int] = typer.Option(None, "--lora-r"),
    eval_every: Optional[int] = typer.Option(None, "--eval-every"),
    save_every: Optional[int] = typer.Option(None, "--save-every"),
    patience: Optional[int] = typer.Option(None, "--patience", help="0 disables early stopping"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    merge: Optional[bool] = typer.Option(None, "--merge/--no-merge", help="also write merged/ (a plain HF "
                                         "folder)"),
    kb: Optional[Path] = typer.Option(None, "--kb", help="knowledge base for --raft (its passages go in the prompts)"),
    raft: bool = typer.Option(False, "--raft", help="RAFT: train on RAG prompts, the gold passage among "
                              "distractors retrieved from --kb"),
    distractors: Optional[int] = typer.Option(None, "--distractors", help="distractor passages per prompt "
                                              "(default: raft.distractors, else retrieval.k - 1)"),
    gold_share: Optional[float] = typer.Option(None, "--gold-share", help="share of prompts holding the gold "
                                               "passage (default: raft.gold_share, else how often retrieval "
                                               "holds the answer)"),
    reasoning: Optional[bool] = typer.Option(None, "--reasoning/--no-reasoning", help="quote the supporting "
                                             "sentence before the answer"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest checkpoint in --out"),
    device: str = typer.Option("cpu", "--device"),
    as_json: bool = typer.Option(False, "--json", help="print the training report as JSON"),
    question_field: Optional[str] = typer.Option(None, "--question-field", help="the column holding the question "
                                                 "(CSV, Parquet, JSONL, datasets folders)"),
    answer_field: Optional[str] = typer.Option(None, "--answer-field", help="the column holding the answer"),
) -> None:
    """Fine-tune a model (LoRA by default) and write an adapter folder that --model accepts everywhere.
    `--kb KB --raft` with no DATASET trains a RAFT reader on pairs synthesised from the knowledge base."""
    from ragtune.config import load_settings
    from ragtune.errors import InputError
    from ragtune.finetune.train import FineTuner

    if dataset is None and not raft:
        raise InputError("finetune: no DATASET given; pass a training file, or --kb KB --raft to train a RAFT "
                         "reader on pairs synthesised from the knowledge base")
    if dataset is None and validation is not None:
        raise InputError(f"--validation {validation}: needs a DATASET; with --kb KB --raft alone the validation "
                         "part is split off the synthesised pairs")
    settings = load_settings(kb, {"raft.distractors": distractors, "raft.gold_share": gold_share,
                                  "raft.reasoning": reasoning})  # ragtune.toml and RAGTUNE_* decide the rest
    model = model or settings.generator.model
    method = method or settings.finetune.method
    overrides = {k: v for k, v in dict(epochs=epochs, max_steps=max_steps, learning_rate=learning_rate,
                                       batch_size=batch_size, gradient_accumulation=gradient_accumulation,
                                       max_seq_tokens=max_seq_tokens, lora_r=lora_r, eval_every=eval_every,
                                       save_every=save_every, patience=patience, seed=seed,
                                       merge=merge).items() if v is not None}
    if method not in ("lora", "full"):
        from ragtune.errors import ConfigError

        raise ConfigError(f"--method {method}: unknown; use lora or full")
    from ragtune.finetune.data import load_examples
    from ragtune.finetune.tables import column_map

    fields = column_map(question_field, answer_field)
    about = None
    if dataset is None:  # --kb KB --raft: pairs synthesised from the knowledge base's chunks
        from ragtune.finetune.raft import epochs as raft_epochs
        from ragtune.finetune.raft_kb import kb_raft_data

        data = kb_raft_data(kb, model, settings, out)
        train: Path | list = data.train
        held_out: Path | list | None = data.validation
        about = data.about
        overrides.setdefault("max_seq_tokens", data.max_seq_tokens)
        overrides.setdefault("epochs", raft_epochs(settings))
        overrides.setdefault("max_steps", settings.finetune.max_steps or settings.raft.kb_max_steps)
    else:
        train = load_examples(dataset, fields) if fields else dataset
        held_out = load_examples(validation, fields) if fields and validation else validation
    if raft and dataset is not None:
        from ragtune.finetune.raft import epochs as raft_epochs
        from ragtune.finetune.raft import raft_dataset

        train, held_out, length = raft_dataset(dataset, validation, kb, model, settings, out, fields)
        overrides.setdefault("max_seq_tokens", length)  # RAFT prompts whole, unless --max-seq-tokens says otherwise
        overrides.setdefault("epochs", raft_epochs(settings))  # --epochs wins over raft.epochs
    tuner = FineTuner(model, method=method, settings=settings.finetune, device=device, **overrides)
    if about is not None and isinstance(train, list):
        _say_synthetic(about, out, train, model, tuner)
    result = tuner.fit(train, held_out, out, resume, about=about)
    if os.environ.get("RANK", "0") != "0":  # under torchrun/accelerate launch only the first process reports
        return
    if as_json:
        typer.echo(json.dumps(result.report, indent=2, default=str))
        return
    best = f"{result.best_val_loss:.4f} at step {result.best_step}" if result.best_val_loss is not None else "-"
    typer.echo(f"trained {result.steps} steps; best validation loss {best}"
               + ("; stopped early" if result.stopped_early else ""))
    for w in result.warnings:
        typer.secho(f"warning: {w}", fg="yellow", err=True)
    uses = f" --kb {kb}" if raft else ""
    typer.echo(f"model: {result.out_dir}  (ragtune ask \"...\"{uses} --model {result.out_dir})")
    if result.merged_dir:
        typer.echo(f"merged: {result.merged_dir}")
    typer.echo(f"report: {result.out_dir / 'training_report.json'}, plot: {result.out_dir / 'loss.png'}")


def _say_synthetic(about: dict, out: Path, train: list, model: str, tuner) -> None:
    """What was synthesised and held out, and the training time estimated on this machine, before training."""
    from ragtune.finetune.raft_kb import estimate_seconds

    typer.echo(f"synthetic data: {about['pairs_used']} of {about['pairs_synthesised']} question/answer pairs from "
               f"the {about['chunks'] - about['heldout_questions']} chunks not held out ({out / about['files']['synthetic']}); "
               f"{about['heldout_questions']} held-out questions from chunks never trained on "
               f"({out / about['files']['heldout']})", err=True)
    typer.echo("measuring this machine for the time estimate ...", err=True)
    seconds, steps = estimate_seconds(train, model, tuner.settings)
    typer.echo(f"estimated training time: about {max(seconds / 60, 0.1):.1f} min for {steps} steps "
               "(from one timed training pass of a median prompt; model loading not counted)", err=True)


def synth_cmd(
    source: str = typer.Argument(..., help="a knowledge-base folder or postgresql:// URL, or documents (file or folder)"),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file to write"),
    generator: str = typer.Option("extractive", "--generator", "-g", help="extractive (no model) or llm"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="for --generator llm: a model spec "
                                        "(default: generator settings, e.g. an OpenAI-compatible endpoint)"),
    per_chunk: int = typer.Option(2, "--per-chunk", help="sentences (extractive) or pairs (llm) per chunk"),
) -> None:
    """Generate question/answer pairs from documents, each keeping its source chunk."""
    from ragtune.config import load_settings
    from ragtune.finetune.synth import load_chunks, synthesize, write_pairs

    settings = load_settings(overrides={"generator.model": model})
    chunks = load_chunks(source, settings)
    generate = None
    if generator == "llm":
        from ragtune.models.backends import load_generator

        generate = load_generator(settings.generator)
    pairs = synthesize(chunks, generator=generator, generate=generate, per_chunk=per_chunk,
                       concurrency=settings.generator.concurrency)
    write_pairs(pairs, out)
    typer.echo(f"{len(pairs)} question/answer pairs from {len(chunks)} chunks → {out}")
