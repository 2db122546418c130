"""The ``unwalled`` command. One module per command group, registered here."""

from __future__ import annotations

import sys

import typer

from unwalled.cli import ask, audit, drift, init, keys, ledger, models, serve, verify
from unwalled.errors import UnwalledError

app = typer.Typer(name="unwalled", no_args_is_help=True, add_completion=False,
                  help="LLM infrastructure you own: routes, contracts, audits, drift "
                       "watch and a ledger.")
for module in (serve, ask, models, init, audit, verify):
    module.register(app)
app.add_typer(ledger.app, name="ledger")
app.add_typer(keys.app, name="keys")
app.add_typer(drift.app, name="drift")


def main() -> None:
    """Entry point: Unwalled's own errors print as one line, exit code 2."""
    try:
        code = app(standalone_mode=False)
    except UnwalledError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
