"""`ragtune ask` (one question, streamed, with numbered citations) and `ragtune demo` (the bundled sample)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Optional

import typer

SAMPLE_KB = Path(__file__).resolve().parents[1] / "sample_kb"  # shipped as package data
# The 135M default model answers best from few passages (with 5 it often echoes the passage list instead).
DEMO_K = 2
DEMO_QUESTIONS = (
    "How long is the warranty on the Quillfeather Q7?",
    "How do I reset the Quillfeather Q7 to factory settings?",
    "What does firmware 4.2 add to the Quillfeather Q7?",
)


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("demo")(demo)


def ask(
    question: str = typer.Argument(..., help="The question to answer."),
    kb: Optional[str] = typer.Option(None, "--kb", help="Knowledge-base folder or postgresql:// URL "
                                                        "(default: ./kb if it exists)."),
    model: Optional[str] = typer.Option(None, "--model", help="Model alias (smollm2, gemma3-270m), folder, .gguf "
                                                               "or adapter; or the endpoint's model name."),
    k: Optional[int] = typer.Option(None, "--k", "-k", help="Passages to retrieve (default: retrieval.k)."),
    as_json: bool = typer.Option(False, "--json", help='Print {"answer": ..., "citations": [...]} only.'),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer when it is complete."),
    choice: Optional[Path] = typer.Option(None, "--choice", help="A `ragtune choose` folder: answer as its "
                                          "winner, with the model, knowledge base and settings it was measured with."),
    contestant: Optional[str] = typer.Option(None, "--contestant", help="With --choice: run this contestant "
                                             "instead (base, rag, finetuned, finetuned+rag, raft)."),
) -> None:
    """Answer a question from your knowledge base, citing each passage it used by number."""
    from ragtune.config import load_settings
    from ragtune.errors import InputError
    from ragtune.index.stores import is_url
    from ragtune.rag import RAG
    from ragtune.winner import from_choice

    winner = from_choice(choice, contestant, kb=kb, model=model)
    if kb is not None and not is_url(kb) and not Path(kb).is_dir():
        raise InputError(f"--kb {kb}: no such knowledge-base folder; create it with: ragtune ingest PATH --kb {kb}")
    if winner is not None:
        kb_dir: str | None = str(winner.kb_path) if winner.kb_path else None
    else:
        kb_dir = kb if kb is not None else ("kb" if Path("kb").is_dir() else None)
    flags = {key: value for key, value in {"generator.model": model, "retrieval.k": k}.items() if value is not None}
    settings = load_settings(kb_dir, overrides={**(winner.overrides() if winner else {}), **flags})
    knowledge_base = None
    if kb_dir is not None:
        from ragtune.index.knowledge_base import KnowledgeBase

        knowledge_base = KnowledgeBase(kb_dir, settings=settings)
    elif not as_json and winner is None:
        _note("No knowledge base (--kb DIR, or a ./kb folder): answering closed-book from the model alone.")
    rag = RAG(knowledge_base, settings=settings, instruction=winner.instruction if winner else None)
    if winner is not None and not as_json:
        _note(f"Answering as {winner.contestant} from {choice} ({winner.why}).")
    if as_json:
        out = rag.ask(question, k=k).to_json()
        if winner is not None:
            out["contestant"] = winner.contestant
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    show_answer(rag, question, k=k, stream=not no_stream)


def demo(
    kb: Path = typer.Option(Path("demo-kb"), "--kb", help="Where to build the sample knowledge base."),
    model: Optional[str] = typer.Option(None, "--model", help="Model to answer with (default: generator.model)."),
) -> None:
    """Ingest the bundled sample documents, then ask three questions whose answers are in them."""
    from ragtune.cli.output import console as make_console
    from ragtune.config import load_settings
    from ragtune.index.knowledge_base import KnowledgeBase
    from ragtune.rag import RAG

    console = make_console(highlight=True)
    settings = load_settings(kb, overrides={"generator.model": model})
    knowledge_base = KnowledgeBase(kb.resolve(), settings=settings)
    console.print(f"[bold]Ingesting[/] the sample knowledge base ({SAMPLE_KB}) into {kb}/")
    with contextlib.chdir(SAMPLE_KB.parent):  # so sources read "sample_kb/warranty.txt", not a site-packages path
        report = knowledge_base.add(["sample_kb"])
    for item in report.items:
        console.print(f"  {item.status:<9} {item.source}" + (f"  ({item.reason})" if item.reason else ""))
    console.print(f"[bold]Loading[/] the model '{settings.generator.model}' (the first run converts it once).")
    rag = RAG(knowledge_base, settings=settings)
    rag.generator  # load now, so the first answer's wait is not mistaken for slow generation
    for question in DEMO_QUESTIONS:
        show_answer(rag, question, k=DEMO_K)
    console.print(f"\nAsk your own: [bold]ragtune ask \"...\" --kb {kb}[/]   "
                  f"Add files: [bold]ragtune ingest PATH --kb {kb}[/]")


def show_answer(rag, question: str, k: int | None = None, stream: bool = True) -> None:
    """Print the question, the answer (streamed token by token), then the numbered citations."""
    from rich.markup import escape

    from ragtune.cli.output import console as make_console
    from ragtune.types import Answer

    console = make_console()
    console.print(f"\n[bold cyan]Q:[/] {escape(question)}")
    console.print("[bold cyan]A:[/] ", end="")
    if stream:
        final: Answer | None = None
        for piece in rag.stream(question, k=k):
            if isinstance(piece, Answer):
                final = piece
            else:
                sys.stdout.write(piece)
                sys.stdout.flush()
        sys.stdout.write("\n")
        assert final is not None, "RAG.stream always ends with the Answer"
        answer = final
    else:
        answer = rag.ask(question, k=k)
        console.print(escape(answer.text))
    if answer.abstained:
        console.print(f"[dim](nothing in the knowledge base scored above rag.min_relevance="
                      f"{rag.settings.rag.min_relevance}; the model was not asked)[/]")
    for c in answer.citations:
        snippet = " ".join(c.text.split())
        snippet = snippet[:100] + ("…" if len(snippet) > 100 else "")
        flag = " [yellow](inferred: the model gave no \\[n]; matched by shared words)[/]" if c.inferred else ""
        console.print(f"  [bold][{c.n}][/] [green]{escape(c.source)}[/]{flag}\n      [dim]{escape(snippet)}[/]")
    if rag.retriever is not None and not answer.citations and not answer.abstained:
        console.print("[dim]  (no passage cited)[/]")


def _note(message: str) -> None:
    typer.secho(message, fg="yellow", err=True)
