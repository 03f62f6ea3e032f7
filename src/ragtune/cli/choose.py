"""`ragtune choose`: index, split, tune, fine-tune, RAFT, evaluate and advise on the user's own data, resumably."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer


def choose_command(
    docs: Path = typer.Argument(..., help="documents (file or folder), or a SQuAD/APIBench-style QA folder"),
    qa_file: Optional[Path] = typer.Argument(None, help="the questions: JSONL, CSV, Parquet, a datasets folder, "
                                             "or a SQuAD/APIBench-style folder (none: questions from DOCS)"),
    train: Optional[Path] = typer.Option(None, "--train", help="training set (default: the QA set's train split, "
                                         "else pairs synthesised from DOCS)"),
    model: Optional[str] = typer.Option(None, "--model", help="base model (default: generator.model)"),
    out: Path = typer.Option(Path("choice"), "--out", help="where index.html, results.json, advice.json, the "
                             "knowledge base and the adapters go; re-run to resume"),
    metric: Optional[str] = typer.Option(None, "--metric", help="how answers are scored (default: the QA set's)"),
    constraints: Optional[Path] = typer.Option(None, "--constraints", help="TOML of advise answers, e.g. "
                                               "knowledge_change = \"daily\""),
    set_: list[str] = typer.Option([], "--set", help="section.field=VALUE sets a setting (not tuned then); "
                                   "key=VALUE without a dot is an advise constraint"),
    question_field: Optional[str] = typer.Option(None, "--question-field", help="the column holding the "
                                                 "question (CSV, Parquet, JSONL, datasets folders)"),
    answer_field: Optional[str] = typer.Option(None, "--answer-field", help="the column holding the gold answer(s)"),
    synth_test: Optional[int] = typer.Option(None, "--synth-test", min=0, help="synthetic test questions to add "
                                             "from DOCS (default choose.synth_test: top up to 30; 0: none)"),
    generator: Optional[str] = typer.Option(None, "--generator", help="what writes synthetic questions and "
                                            "training pairs: extractive (no model) or llm (the [generator] model)"),
    strict: bool = typer.Option(False, "--strict", help="refuse a QA set with any bad line (default: skip and "
                                "name them, refusing only when more than 20% are bad)"),
    plan: bool = typer.Option(False, "--plan", help="check everything and say what a run would do and take; "
                              "runs nothing heavy (DOCS is counted, not indexed)"),
    as_json: bool = typer.Option(False, "--json", help="with --plan: print the plan as JSON"),
    fresh: bool = typer.Option(False, "--fresh", help="start over: remove what choose wrote in --out (never "
                               "other files); default: redo only the stages whose inputs changed"),
    train_all: bool = typer.Option(False, "--train-all", help="train on every row, synthetic pairs too "
                                   "(default: every row you give, choose.max_train_examples = 0; at most "
                                   "choose.max_synthetic_examples of pairs synthesised from DOCS)"),
) -> None:
    """RAG or fine-tuning? Build base, RAG, fine-tuned, fine-tuned + RAG and RAFT on your data and choose."""
    from ragtune.advise import read_answers, validate
    from ragtune.choose import Choice
    from ragtune.config import parse_assignments
    from ragtune.evaluate.verdict import headline
    from ragtune.finetune.tables import column_map

    pairs = parse_assignments(set_)
    overrides: dict[str, Any] = {k: v for k, v in pairs.items() if "." in k}
    flags = {"choose.synth_test": synth_test, "choose.synth_generator": generator}
    overrides.update({k: v for k, v in flags.items() if v is not None})  # unset: ragtune.toml decides
    given = read_answers(constraints) if constraints else {}
    given.update({k: v for k, v in pairs.items() if "." not in k})
    validate(given)  # a wrong constraint (knowledge_change=whenever) is one line, before any work
    choice = Choice(qa_file, out, train=train, model=model, metric=metric, constraints=given,
                    overrides=overrides, say=lambda line: typer.secho(line, bold=line.startswith("["), err=True),
                    strict=strict, fields=column_map(question_field, answer_field), train_all=train_all,
                    fresh=fresh)
    if plan:
        from ragtune.choose.plan import plan as planned
        from ragtune.choose.plan import show

        typer.echo(show(planned(choice, [docs]), as_json))
        return
    results = choice.run([docs])
    advice = results["advice"]
    from ragtune.evaluate.report import reach_note, unindexed_warning

    for warning in (unindexed_warning(results), reach_note(results)):
        if warning:
            typer.secho(warning, err=True, fg="yellow")
    if reach_note(results):  # what tuning measured, as the report's table shows it
        for t in results["choose"].get("tune", {}).get("trials", []):
            typer.echo(f"  tuned: k={t['k']} context_sentences={t['context_sentences']} gate={t['min_relevance']} "
                       f"template={t.get('template', '-')}: "
                       f"dev score {t['score']:.3f}, reach {t['reach']:.2f}", err=True)
    typer.secho(f"recommendation: {headline(advice)}", bold=True)
    for reason in advice["reasons"][:6]:
        typer.echo(f"  - {reason}")
    typer.echo(f"report: {out / 'index.html'}  results: {out / 'results.json'}  advice: {out / 'advice.json'}")
    from ragtune.winner import read_winner, run_commands

    winner = read_winner(out)
    typer.secho(f"winner: {winner.contestant} ({winner.why}); recorded in {out / 'winner.toml'}", bold=True)
    for line in run_commands(out):
        typer.echo(f"  {line}")


def register(app: typer.Typer) -> None:
    app.command("choose")(choose_command)
