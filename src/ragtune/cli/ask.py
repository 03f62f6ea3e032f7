"""PLACEHOLDER: commands of this group are written by its owner."""

import typer


def register(app: typer.Typer) -> None:
    pass
