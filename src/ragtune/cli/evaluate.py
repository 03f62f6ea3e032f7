"""`ragtune eval` (run the variants, write report/) and `ragtune advise` (recommend RAG, fine-tuning or both)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def eval_command(
    qa_file: Path = typer.Argument(..., help="QA JSONL, CSV, Parquet or datasets folder, or a SQuAD-style / "
                                   "APIBench-style folder"),
    kb: Optional[str] = typer.Option(None, "--kb", help="knowledge-base folder or postgresql:// URL (a QA folder's documents are indexed into it)"),
    model: Optional[str] = typer.Option(None, "--model", help="base model: alias, HF folder or .gguf (default: config)"),
    finetuned: Optional[Path] = typer.Option(None, "--finetuned", help="fine-tuned model or adapter folder"),
    out: Path = typer.Option(Path("report"), "--out", help="where index.html, results.json and predictions.jsonl go"),
    raft: Optional[Path] = typer.Option(None, "--raft", help="a RAFT adapter (finetune --raft), answering with retrieval"),
    variants: Optional[str] = typer.Option(None, "--variants", help="comma list of base,rag,finetuned,finetuned+rag,raft"),
    limit: Optional[int] = typer.Option(None, "--limit", help="ask a seeded sample of N questions"),
    seed: int = typer.Option(0, "--seed"),
    split: Optional[str] = typer.Option(None, "--split", help="only this split of the QA set (APIBench: train/validation/test)"),
    train_qa: Optional[Path] = typer.Option(None, "--train-qa", help="the fine-tuning data: questions in it count as 'seen' (generalisation test)"),
    freshness: bool = typer.Option(False, "--freshness", help="also change/add facts in a copy of the KB and re-ask"),
    qa_format: str = typer.Option("auto", "--format", help="auto, jsonl, squad or apibench"),
    metric: Optional[str] = typer.Option(None, "--metric", help="how answers are scored (default: what the QA set "
                                         "declares, else inferred); see `ragtune score --help`"),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="answer length cap"),
    k: Optional[int] = typer.Option(None, "-k", help="passages retrieved per question"),
    set_: list[str] = typer.Option([], "--set", help="any setting, e.g. retrieval.mode=dense"),
    judge: Optional[str] = typer.Option(None, "--judge", help="a bigger model that also rates groundedness (spec or endpoint model name)"),
    judge_url: Optional[str] = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL for --judge"),
    question_field: Optional[str] = typer.Option(None, "--question-field", help="the column holding the "
                                                 "question (CSV, Parquet, JSONL, datasets folders)"),
    answer_field: Optional[str] = typer.Option(None, "--answer-field", help="the column holding the gold answer(s)"),
    strict: bool = typer.Option(False, "--strict", help="refuse a QA set with any bad line (default: skip and "
                                "name them, refusing only when more than 20% are bad)"),
) -> None:
    """Run base / RAG / fine-tuned / fine-tuned+RAG / RAFT on the same questions; write report/ and results.json."""
    from ragtune.config import load_settings, parse_assignments
    from ragtune.evaluate.gold import check_gold
    from ragtune.evaluate.qa import load_qa, skipped_lines
    from ragtune.evaluate.runner import evaluate

    overrides: dict[str, object] = dict(parse_assignments(set_))
    # a flag given wins over the same --set; a flag not given must not erase it
    overrides.update({key: value for key, value in (("generator.max_new_tokens", max_new_tokens),
                                                    ("retrieval.k", k)) if value is not None})
    settings = load_settings(kb, overrides)
    judge_gen = None
    if judge:
        from ragtune.models.backends import load_generator

        judge_gen = load_generator(settings.generator.model_copy(update={
            "model": judge, "max_new_tokens": 4, **({"backend": "openai", "base_url": judge_url} if judge_url else {})}))
    from ragtune.finetune.tables import column_map

    qa = check_gold(load_qa(qa_file, qa_format, metric, column_map(question_field, answer_field)), strict=strict)
    for line in skipped_lines(qa):
        typer.secho(line, err=True, fg="yellow")
    _check_kb(kb, bool(qa.documents), bool(settings.store.url))
    typer.echo(f"metric: {qa.metric} ({qa.metric_reason})")
    results = evaluate(qa, kb=kb, model=model, finetuned=finetuned, raft=raft, out=out, settings=settings,
                       variants=[v.strip() for v in variants.split(",")] if variants else None, limit=limit,
                       seed=seed, split=split, train_qa=train_qa, freshness=freshness,
                       judge=judge_gen)
    _print_summary(results, out)


def _check_kb(kb: str | None, qa_brings_documents: bool, on_server: bool) -> None:
    """A --kb folder holding no knowledge base is a typo unless the QA set brings documents to index into it
    (else an empty store is created and RAG is scored with nothing to retrieve)."""
    from ragtune.errors import InputError
    from ragtune.index.stores import is_url

    if kb is None or is_url(kb) or on_server or qa_brings_documents:
        return
    folder = Path(kb)
    if not (folder / "manifest.json").is_file() and not (folder / "lance").is_dir():
        what = "does not exist" if not folder.exists() else "holds no knowledge base"
        raise InputError(f"--kb {kb}: {what}; build one with `ragtune ingest PATH --kb {kb}`, or give a QA folder "
                         "that brings its documents")


def _print_summary(results: dict, out: Path) -> None:
    from rich.table import Table

    from ragtune.cli.output import console as make_console

    key = results["headline"]
    table = Table(title=f"{results['qa']['name']}: {results['qa']['n']} questions ({key})")
    for col in ("variant", key, "95% CI", "p50 s", "p95 s", "peak MiB"):
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, v in results["variants"].items():
        ci, lat = v["ci"]["score"], v["latency_s"]
        table.add_row(name, f"{v['score']:.3f}", f"[{ci[0]:.3f}, {ci[1]:.3f}]", f"{lat['p50'] or 0:.2f}",
                      f"{lat['p95'] or 0:.2f}", f"{v['peak_rss_mb']:.0f}" if v.get("peak_rss_mb") else "–")
    console = make_console(highlight=True)
    console.print(table)
    if results.get("retrieval"):
        from ragtune.evaluate.report import unindexed_warning

        r = results["retrieval"]
        console.print(f"retrieval: recall@1 {r['recall@1']:.3f}, recall@{r['k']} {r['recall@k']:.3f}, MRR {r['mrr']:.3f}")
        if unindexed_warning(results):
            typer.secho(unindexed_warning(results), err=True, fg="yellow")
    tied = f" (tied with {', '.join(results['tied_with_best'])})" if results.get("tied_with_best") else ""
    console.print(f"best: {results['best']}{tied}\nreport: {out / 'index.html'}  results: {out / 'results.json'}")


def advise_command(
    answers: Optional[Path] = typer.Option(None, "--answers", help="TOML file of questionnaire answers"),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE answer, e.g. knowledge_change=daily (repeatable)"),
    evidence: Optional[Path] = typer.Option(None, "--evidence", help="report folder (or results.json) from `ragtune eval`"),
    as_json: bool = typer.Option(False, "--json", help="print the recommendation as JSON"),
) -> None:
    """Recommend RAG, fine-tuning, both or neither, with reasons citing your constraints and measured figures."""
    from ragtune.advise import QUESTIONS, advise, read_answers
    from ragtune.config import parse_assignments
    from ragtune.evaluate.verdict import headline

    given: dict = read_answers(answers) if answers else {}
    given.update(parse_assignments(set_))
    if not given and evidence is None and sys.stdin.isatty() and not as_json:
        for key, (kind, question) in QUESTIONS.items():
            hint = "/".join(kind) if isinstance(kind, tuple) else ("true/false" if kind is bool else "number")
            value = typer.prompt(f"{question} [{hint}, Enter to skip]", default="", show_default=False)
            if value.strip():
                given[key] = value.strip()
    rec = advise(given, evidence)
    if as_json:
        typer.echo(json.dumps(rec.to_json(), indent=2, default=str))
        return
    typer.secho(f"recommendation: {headline(rec.to_json())}", bold=True)
    for reason in rec.reasons:
        typer.echo(f"  - {reason}")
    if rec.to_measure:
        typer.echo("to settle it:" if evidence is not None else "to decide with evidence, measure:")
        for item in rec.to_measure:
            typer.echo(f"  * {item}")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("advise")(advise_command)
