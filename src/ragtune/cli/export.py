"""`ragtune export`: the winner of a bake-off (or any adapter) as a merged HF folder or a GGUF for Ollama."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)


def export_command(
    source: Path = typer.Argument(..., help="A `ragtune choose` output folder, or an adapter folder."),
    out: Path = typer.Option(..., "--out", help="Where the export goes (a new or empty folder)."),
    fmt: str = typer.Option("hf", "--format", help="hf: a merged Hugging Face folder (vLLM, TGI, transformers); "
                            "gguf: one GGUF file and an Ollama Modelfile (llama.cpp, Ollama)."),
    contestant: Optional[str] = typer.Option(None, "--contestant", help="Export this contestant instead of the "
                                             "recommended one (base, rag, finetuned, finetuned+rag, raft)."),
    outtype: str = typer.Option("f16", "--outtype", help="gguf weights: f16, q8_0 or f32."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out folder."),
) -> None:
    """Export a contestant as a standalone model, with a model card (and an Ollama Modelfile for gguf)."""
    from ragtune.export import export

    done = export(source, out, fmt=fmt, contestant=contestant, outtype=outtype, force=force)
    typer.secho(f"exported to {done}/ (model card: {done / 'README.md'})", fg="green")
    if fmt == "gguf":
        typer.echo(f"  Ollama: cd {done} && ollama create NAME -f Modelfile")
