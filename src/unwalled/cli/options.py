"""Options shared by several commands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from rich.console import Console

ConfigOption = Annotated[Optional[str], typer.Option(
    "--config", "-c", help="Path to unwalled.yaml (else $UNWALLED_CONFIG, ./unwalled.yaml, "
                           "or the built-in default route on the embedded model).")]


def console(*, stderr: bool = False) -> "Console":
    """A rich console that does not cut tables to 80 columns when the output is
    a pipe or a file (``unwalled ledger tail | less``)."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr,
                                                                    width=200)
