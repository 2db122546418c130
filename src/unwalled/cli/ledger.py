"""``unwalled ledger tail|stats|export``: read the record of every call."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import orjson
import typer
from rich.markup import escape
from rich.table import Table

from unwalled.cli.options import ConfigOption, console

app = typer.Typer(no_args_is_help=True, help="Read the ledger.")


def _open(config: str | None):  # noqa: ANN202
    from unwalled.config import load_config
    from unwalled.ledger import Ledger

    return Ledger(load_config(config).ledger.url)


@app.command()
def tail(limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
         route: Annotated[Optional[str], typer.Option()] = None,
         json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")]
         = False,
         config: ConfigOption = None) -> None:
    """The newest requests, newest first, with every attempt."""
    ledger = _open(config)
    try:
        rows = ledger.tail(limit, route)
    finally:
        ledger.close()
    if json:
        for row in rows:
            typer.echo(orjson.dumps(row, default=str).decode())
        return
    table = Table("time", "ingress", "route", "target", "status", "tokens in/out",
                  "ms", "cost $", "attempts / error")
    for row in rows:
        tries = " → ".join(f"{a['target']}:{a['outcome']}" for a in row["attempts"])
        detail = tries + (f"  {row['error'][:80]}" if row["error"] else "")
        # Ledger text is data, not markup: "[regex] ..." must print as written.
        table.add_row(dt.datetime.fromtimestamp(row["ts"]).strftime("%H:%M:%S"),
                      row["ingress"], escape(row["route"] or "-"),
                      escape(row["target"] or "-"),
                      str(row["status"]),
                      f"{row['prompt_tokens']}/{row['completion_tokens']}"
                      + ("~" if row["usage_estimated"] else ""),
                      f"{row['latency_ms']:.0f}", f"{row['cost']:.6f}", escape(detail))
    console().print(table)


@app.command()
def stats(hours: Annotated[Optional[float], typer.Option(
              min=0.001, help="Only the last N hours.")] = None,
          json: Annotated[bool, typer.Option("--json")] = False,
          config: ConfigOption = None) -> None:
    """Requests, errors, tokens, cost and latency per route and target."""
    ledger = _open(config)
    try:
        since = time.time() - hours * 3600 if hours else None
        rows = ledger.stats(since)
        total = ledger.count()
    finally:
        ledger.close()
    if json:
        typer.echo(orjson.dumps({"total": total, "groups": rows}).decode())
        return
    table = Table("route", "target", "requests", "errors", "tokens in", "tokens out",
                  "cost $", "p50 ms", "p95 ms", title=f"{total} requests in the ledger")
    for r in rows:
        table.add_row(escape(r["route"]), escape(r["target"]), str(r["requests"]),
                      str(r["errors"]),
                      str(r["prompt_tokens"]), str(r["completion_tokens"]),
                      f"{r['cost']:.4f}", f"{r['latency_p50_ms']:.0f}",
                      f"{r['latency_p95_ms']:.0f}")
    console().print(table)


@app.command()
def export(output: Annotated[Optional[Path], typer.Option(
               "--output", "-o", help="Write here instead of to standard output.")]
           = None,
           fmt: Annotated[str, typer.Option(
               "--format", "-f", help="jsonl (lossless: attempts nested, verdict as "
                                      "JSON) or csv (one row a request).")] = "jsonl",
           since: Annotated[Optional[str], typer.Option(
               help="Only requests from this time on: ISO 8601 (2026-12-01, "
                    "2026-12-01T09:30; UTC without an offset) or Unix seconds.")]
           = None,
           until: Annotated[Optional[str], typer.Option(
               help="Only requests before this time (same forms as --since).")]
           = None,
           route: Annotated[Optional[str], typer.Option(help="Only this route.")]
           = None,
           config: ConfigOption = None) -> None:
    """Every request, oldest first, with its attempts: JSONL or CSV, in flat memory."""
    from unwalled.errors import ConfigError
    from unwalled.ledger import export as exporting

    if fmt not in ("jsonl", "csv"):
        raise ConfigError(f"unknown format {fmt!r}.", key="--format",
                          fix="give --format jsonl or --format csv.")
    if output is not None and str(output) == "-":
        output = None  # "-" is standard output, as for most tools
    window = {"since": exporting.parse_time(since, "--since") if since else None,
              "until": exporting.parse_time(until, "--until") if until else None}
    try:
        out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    except OSError as exc:
        raise ConfigError(f"cannot write {output}: {exc.strerror}.", key="--output",
                          fix="give a path in a folder that exists and is writable."
                          ) from None
    ledger = _open(config)
    try:
        rows = ledger.export(route=route, **window)
        count = exporting.write(rows, out, fmt)  # type: ignore[arg-type]
    finally:
        ledger.close()
        if output:
            out.close()
    if output:
        typer.echo(f"{count} requests written to {output}", err=True)
