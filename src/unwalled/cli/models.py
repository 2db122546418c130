"""``unwalled models``: the routes and their targets."""

from __future__ import annotations

import typer
from rich.table import Table

from unwalled.cli.options import ConfigOption, console


def register(app: typer.Typer) -> None:
    @app.command()
    def models(config: ConfigOption = None) -> None:
        """List the routes an application can call, with their targets."""
        from unwalled.config import is_remote, load_config

        cfg = load_config(config)
        table = Table("route", "targets (in order)", "retries", "timeout s", "remote",
                      "contract", title=f"routes from {cfg.source}")
        for name, route in cfg.routes.items():
            remote = any(is_remote(cfg.backends[t.target.split("/")[0]])
                         for t in route.targets)
            table.add_row(name, ", ".join(t.target for t in route.targets),
                          str(route.retries), f"{route.timeout:g}",
                          "yes" if remote else "no", _contract(route.contract))
        console().print(table)


def _contract(value: object) -> str:
    """How a route's contract is given: its name or file, or that it is inline."""
    if value is None:
        return "-"
    return value if isinstance(value, str) else "(inline)"
