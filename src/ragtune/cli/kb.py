"""Knowledge-base commands: ingest, search, sources, remove, config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ragtune.cli.output import console

KB_OPTION = typer.Option("kb", "--kb", help="Knowledge-base folder, or a postgresql://user@host/db URL.")


def _open(kb: str, create: bool = False, overrides: dict | None = None):
    """The knowledge base at a folder or database URL (``store.url`` in the folder's ragtune.toml also counts)."""
    from ragtune.config import load_settings
    from ragtune.errors import InputError
    from ragtune.index.knowledge_base import KnowledgeBase
    from ragtune.index.stores import is_url

    settings = load_settings(None if is_url(kb) else kb, overrides)
    on_server = is_url(kb) or settings.store.url
    # a kb whose manifest.json was deleted still has its store (lance/): opening it rebuilds the manifest
    if not create and not on_server and not (Path(kb) / "manifest.json").exists() and not (Path(kb) / "lance").is_dir():
        raise InputError(f"{kb}: no knowledge base here; create one with: ragtune ingest PATH --kb {kb}")
    knowledge_base = KnowledgeBase(kb, settings=settings)
    if not create and on_server and not knowledge_base.manifest.embedder:
        raise InputError(f"{knowledge_base.name}: no knowledge base in this database yet; create one with: "
                         "ragtune ingest PATH --kb URL")
    return knowledge_base


def ingest(paths: list[Path] = typer.Argument(..., help="Files or folders (txt, md, html, pdf, docx)."),
           kb: str = KB_OPTION,
           tag: list[str] = typer.Option([], "--tag", help="Tag every ingested chunk (repeatable); filter with search --tag."),
           as_json: bool = typer.Option(False, "--json", help="Print the per-source report as JSON."),
           ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS",
                                             help="Read, chunk and embed on Ray: 'local' (a local instance), "
                                                  "'auto' (this machine's cluster) or ray://head:10001.")) -> None:
    """Add files to the knowledge base: unchanged files are skipped, changed ones replaced."""
    from rich.table import Table

    knowledge_base = _open(kb, create=True)
    if ray is not None:
        from ragtune.index.ray_ingest import add_with_ray

        report = add_with_ray(knowledge_base, paths, tags=tag or None, address=None if ray == "local" else ray)
    else:
        report = knowledge_base.add(paths, tags=tag or None)
    if as_json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=1))
    else:
        table = Table("status", "source", "chunks", "note", box=None)
        table.columns[1].overflow = table.columns[3].overflow = "fold"
        colour = {"added": "green", "updated": "cyan", "unchanged": "dim", "failed": "red"}
        for item in report:
            table.add_row(f"[{colour[item.status]}]{item.status}[/]", item.source, str(item.chunks),
                          item.reason if item.status == "failed" else "")
        console().print(table)
        counts = ", ".join(f"{len(report.of(s))} {s}" for s in ("added", "updated", "unchanged", "failed"))
        console().print(f"{counts}; {report.embedded} chunks embedded; kb: {knowledge_base.name}")
    for item in report.failed:
        typer.secho(f"error: {item.reason}", fg="red", err=True)
    if report.failed:
        raise typer.Exit(1)


def search(query: str = typer.Argument(..., help="What to look for."),
           kb: str = KB_OPTION,
           k: Optional[int] = typer.Option(None, "-k", "--k", help="How many hits (default retrieval.k)."),
           mode: Optional[str] = typer.Option(None, "--mode", help="hybrid (default), dense or lexical."),
           source: list[str] = typer.Option([], "--source", help="Only these sources (repeatable)."),
           tag: list[str] = typer.Option([], "--tag", help="Only chunks with any of these tags (repeatable)."),
           as_json: bool = typer.Option(False, "--json", help='Print [{"source", "text", "score", ...}].')) -> None:
    """Find the passages that best match a query."""
    where: dict[str, Any] = {}
    if source:
        where["source"] = source
    if tag:
        where["tags"] = tag
    hits = _open(kb, overrides={"retrieval.k": k}).search(query, where=where or None, mode=mode)
    if as_json:
        print(json.dumps([{"source": h.source, "text": h.text, "score": h.score, "id": h.id,
                           "dense_score": h.metadata.get("dense_score"),
                           "lexical_score": h.metadata.get("lexical_score"),
                           "metadata": h.metadata} for h in hits], ensure_ascii=False, indent=1, default=str))
        return
    shown = console()
    if not hits:
        shown.print("no matches")
    for n, h in enumerate(hits, 1):
        shown.print(f"[bold][{n}][/] {h.source}  [dim]score {h.score:.3f}, "
                      f"cosine {h.metadata.get('dense_score', 0.0):.3f}[/]")
        snippet = " ".join(h.text.split())
        shown.print(f"    {snippet[:300]}{'…' if len(snippet) > 300 else ''}", markup=False)


def sources(kb: str = KB_OPTION,
            as_json: bool = typer.Option(False, "--json", help="Print the sources as JSON.")) -> None:
    """List what is in the knowledge base."""
    from dataclasses import asdict

    from rich.table import Table

    knowledge_base = _open(kb)
    infos = knowledge_base.sources()
    if infos and len(knowledge_base) == 0:  # listed from the manifest, but the store lost their chunks
        typer.secho(f"warning: {kb}: the store holds no chunks for these sources; re-run `ragtune ingest` with the "
                    f"same files and --kb {kb} to rebuild it", fg="yellow", err=True)
    if as_json:
        print(json.dumps([asdict(s) for s in infos], ensure_ascii=False, indent=1))
        return
    table = Table("source", "chunks", "format", "added", "sha256", box=None)
    table.columns[0].overflow = "fold"
    for s in infos:
        table.add_row(s.source, str(s.chunks), s.format or "-", s.added_at, s.sha256[:12])
    shown = console()
    shown.print(table)
    shown.print(f"{len(infos)} sources, {sum(s.chunks for s in infos)} chunks")


def remove(source: str = typer.Argument(..., help="A source name as shown by `ragtune sources`."),
           kb: str = KB_OPTION) -> None:
    """Delete one source and its chunks."""
    n = _open(kb).remove(source)
    console().print(f"removed {source}: {n} chunks")


def config(kb: Path = typer.Option(Path("kb"), "--kb", help="Knowledge-base folder."),
           set_: list[str] = typer.Option([], "--set", help="KEY=VALUE override, e.g. retrieval.k=8 (repeatable)."),
           save: bool = typer.Option(False, "--save", help="Write the --set values into <kb>/ragtune.toml."),
           as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Print the effective settings (defaults < ragtune.toml < RAGTUNE_* environment < --set)."""
    from ragtune.config import CONFIG_FILE, load_settings, parse_assignments, save_overrides, to_toml

    overrides = parse_assignments(set_)
    settings = load_settings(kb, overrides)  # validates the overrides before anything is saved
    if save and overrides:
        save_overrides(kb / CONFIG_FILE, overrides)
        typer.secho(f"saved {len(overrides)} setting(s) to {kb / CONFIG_FILE}", err=True)
    data = settings.model_dump(mode="json")
    print(json.dumps(data, indent=1) if as_json else to_toml(data))


def migrate(source: str = typer.Argument(..., help="The knowledge base to copy (a folder or URL)."),
            target: str = typer.Argument(..., help="Where to: postgresql://user@host/db (or a folder)."),
            as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Copy a knowledge base, vectors included, into PostgreSQL; then verify counts and chunk ids."""
    from ragtune.index.migrate import migrate as run

    report = run(source, target)
    if report.kept or report.replaced:  # the target was not empty: say it was a merge, not a copy
        typer.secho(f"warning: {report.target} already held {report.kept + report.replaced} sources: merged, "
                    f"{report.replaced} replaced by the copy and {report.kept} kept; it now holds "
                    f"{report.target_chunks} chunks", fg="yellow", err=True)
    if as_json:
        print(json.dumps(report.to_json(), indent=1))
        return
    console().print(f"copied {report.sources} sources, {report.chunks} chunks from {report.source} to "
                     f"{report.target} ({report.embedded} embedded now); counts and ids verified")


def register(app: typer.Typer) -> None:
    app.command()(ingest)
    app.command()(search)
    app.command()(sources)
    app.command()(remove)
    app.command()(config)
    admin = typer.Typer(help="Knowledge-base administration: migrate.", no_args_is_help=True)
    admin.command("migrate")(migrate)
    app.add_typer(admin, name="kb")
