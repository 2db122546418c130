"""``unwalled keys create|list|revoke``: API keys for the gateway.

A key is printed once, when it is made; the ledger database keeps only its
hash. The gateway asks for keys when the config says ``auth: {required: true}``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import orjson
import typer
from rich.table import Table

from unwalled.cli.options import ConfigOption, console

app = typer.Typer(no_args_is_help=True, help="Make, list and revoke API keys.")


def _store(config: str | None):  # noqa: ANN202 - a KeyStore
    from unwalled.config import load_config
    from unwalled.gateway.keys import KeyStore
    from unwalled.ledger.store import engine_for, migrate

    engine = engine_for(load_config(config).ledger.url)
    migrate(engine)
    return KeyStore(engine)


@app.command()
def create(name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
           route: Annotated[Optional[list[str]], typer.Option(
               "--route", "-r", help="A route it may call (repeat; default: all).")]
           = None,
           contract: Annotated[Optional[list[str]], typer.Option(
               help="A contract it may name (repeat; default: all).")] = None,
           rpm: Annotated[Optional[int], typer.Option(help="Requests per minute.")]
           = None,
           tpm: Annotated[Optional[int], typer.Option(help="Tokens per minute.")]
           = None,
           budget: Annotated[Optional[float], typer.Option(
               help="Spending budget in dollars, over the key's life.")] = None,
           json: Annotated[bool, typer.Option("--json")] = False,
           config: ConfigOption = None) -> None:
    """Make a key and print it once: it cannot be shown again."""
    key, secret = _store(config).create(name, routes=route, contracts=contract,
                                        rpm=rpm, tpm=tpm, budget=budget)
    if json:
        typer.echo(orjson.dumps({**key.public(), "key": secret}).decode())
        return
    typer.echo(secret)
    typer.echo(f"{key.id} ({key.name}): store this key now; Unwalled keeps only its "
               "hash and cannot show it again.", err=True)


@app.command("list")
def list_keys(all: Annotated[bool, typer.Option(
                  "--all", help="Include revoked keys.")] = False,
              json: Annotated[bool, typer.Option("--json")] = False,
              config: ConfigOption = None) -> None:
    """The keys, without their secrets."""
    keys = _store(config).list(include_revoked=all)
    if json:
        for key in keys:
            typer.echo(orjson.dumps(key.public()).decode())
        return
    table = Table("id", "name", "starts", "routes", "rpm", "tpm", "budget $", "state")
    for key in keys:
        table.add_row(key.id, key.name, key.prefix + "…",
                      ", ".join(key.routes) if key.routes else "all",
                      str(key.rpm or "-"), str(key.tpm or "-"),
                      f"{key.budget:g}" if key.budget else "-",
                      "revoked" if key.revoked else "active")
    console().print(table)


@app.command()
def revoke(key: Annotated[str, typer.Argument(
               help="The key's id (key_...), its shown start (uw-xxxx) or its name.")],
           config: ConfigOption = None) -> None:
    """Revoke a key; every replica refuses it within auth.cache_seconds."""
    revoked = _store(config).revoke(key)
    typer.echo(f"revoked {revoked.id} ({revoked.name})", err=True)
