"""``unwalled verify CONTRACT [FILE]``: check an answer against a contract, offline.

Exit 0 when the answer passes, 1 with the violations when it does not, 2 when
the contract itself is wrong (the error names its file, place and fix).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def verify(contract: Annotated[Path, typer.Argument(
                   help="A contract YAML file.")],
               file: Annotated[Optional[Path], typer.Argument(
                   help="The answer to check; read from stdin when omitted.")] = None,
               as_json: Annotated[bool, typer.Option(
                   "--json", help="Print the result as JSON, for machines.")] = False,
               canary: Annotated[Optional[list[str]], typer.Option(
                   help="A canary marker planted in the prompt (repeatable).")] = None,
               ) -> None:
        """Check text against a contract offline: exit 0 pass, 1 violations."""
        from unwalled.contracts import Verifier, load_contract
        from unwalled.errors import UnwalledError

        try:
            verifier = Verifier(load_contract(contract))
            text = _read(file)
        except UnwalledError as exc:
            if as_json:  # a machine reads stdout: the error goes there too
                typer.echo(orjson.dumps({"passed": None, "error": {
                    "message": exc.message, **{k: v for k, v in exc.details.items()
                                               if v is not None}}},
                    option=orjson.OPT_INDENT_2).decode())
            raise
        result = verifier.verify(text, canaries=tuple(canary or ()))
        if as_json:
            typer.echo(orjson.dumps({
                "contract": verifier.contract.name, "passed": result.passed,
                "parsed": result.parsed if result.has_parsed else None,
                "violations": [{"check": v.check, "path": v.path, "message": v.message}
                               for v in result.violations],
            }, option=orjson.OPT_INDENT_2).decode())
        elif result.passed:
            typer.echo(f"pass: contract {verifier.contract.name!r}")
        else:
            typer.echo(f"fail: contract {verifier.contract.name!r}, "
                       f"{len(result.violations)} violation(s):")
            for violation in result.violations:
                typer.echo(f"  {violation}")
        raise typer.Exit(0 if result.passed else 1)


def _read(file: Path | None) -> str:
    from unwalled.errors import ConfigError

    if file is not None:
        from unwalled.textfile import read_text

        return read_text(file)
    raw = sys.stdin.buffer.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the answer on stdin is not UTF-8 text (byte {exc.start}).",
                          fix="pipe UTF-8 text, e.g. through 'iconv -t UTF-8'."
                          ) from None
