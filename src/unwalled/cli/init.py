"""``unwalled init``: write a commented example ``unwalled.yaml``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def init(path: Annotated[Path, typer.Argument(help="Where to write it.")]
             = Path("unwalled.yaml"),
             force: Annotated[bool, typer.Option(help="Overwrite an existing file.")]
             = False) -> None:
        """Write a commented example config that works as it is."""
        if path.exists() and not force:
            typer.echo(f"error: {path} exists; pass --force to overwrite it.", err=True)
            raise typer.Exit(2)
        text = resources.files("unwalled").joinpath("example.yaml").read_text()
        path.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {path}. Check it with 'unwalled models -c {path}', "
                   f"then 'unwalled serve -c {path}'.")
