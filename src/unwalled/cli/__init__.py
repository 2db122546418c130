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
    except BrokenPipeError:
        _reader_left()
    except UnwalledError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        sys.exit(130)
    except SystemExit:
        # click meets a closed pipe with exit code 1, which `drift check` uses
        # for "drift": tell the two apart by the wrapper click puts on stdout.
        if type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):
            _reader_left()
        raise
    except Exception as exc:
        import click

        # Usage errors (a bad option value, say): click's, or those of the click
        # typer carries inside it, which are not click's classes.
        if isinstance(exc, (click.ClickException, typer.TyperException)) \
                and hasattr(exc, "show"):
            exc.show()
            sys.exit(getattr(exc, "exit_code", 2))
        raise
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_left()
    sys.exit(code if isinstance(code, int) else 0)


def _reader_left() -> None:
    """The reader of standard output went away (``| head``). Exit as a program
    stopped by SIGPIPE does (141), so that no exit code that means something
    (``drift check``'s 1 for drift, say) is claimed by accident."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())  # the interpreter's last flush must not fail
    sys.exit(141)
