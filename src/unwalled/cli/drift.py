"""``unwalled drift``: snapshot a route's behaviour, then check it for drift.

``check`` exits 0 when there is no drift, 1 when there is, and 2 when the check
could not run (the message says why), so that it can gate a deployment in CI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Annotated, Awaitable, Callable, Optional, TypeVar

import typer
from rich.table import Table

from unwalled.cli.options import ConfigOption
from unwalled.cli.options import console as cli_console

if TYPE_CHECKING:  # the CLI imports these lazily, to start fast
    from unwalled.drift import DriftReport, Snapshot
    from unwalled.runtime import Runtime

Result = TypeVar("Result")

app = typer.Typer(no_args_is_help=True,
                  help="Drift watch: snapshot a route's behaviour, then test fresh "
                       "samples against it.")

RouteArgument = Annotated[str, typer.Argument(help="The route to sample.")]


@app.command()
def snapshot(route: RouteArgument,
             probes: Annotated[str, typer.Option(
                 "--probes", "-p", help="A JSONL probe set, e.g. "
                                        "examples/drift/probes.jsonl.")],
             samples: Annotated[Optional[int], typer.Option(
                 min=1, help="Samples per probe, for every probe (else each "
                             "probe's own 'samples').")] = None,
             seed: Annotated[Optional[int], typer.Option(
                 help="Seed the sampling, for a repeatable snapshot.")] = None,
             config: ConfigOption = None) -> None:
    """Sample every probe through ROUTE and keep the answers as its reference."""
    from unwalled.drift import DriftStore, load_probes, take_snapshot

    probe_set = load_probes(probes)
    if samples is not None:
        probe_set = probe_set.with_samples(samples)

    async def run(runtime: Runtime) -> Snapshot:
        taken = await take_snapshot(runtime, route, probe_set, seed=seed)
        DriftStore(runtime.ledger).save_snapshot(taken)
        return taken

    taken = _with_runtime(config, run)
    typer.echo(f"snapshot {taken.id}: route {route}, {len(probe_set)} probes, "
               f"{len(taken.samples)} samples from {', '.join(taken.targets) or '-'} "
               f"(probe set {probe_set.name}, digest {probe_set.digest})")


@app.command()
def check(route: RouteArgument,
          snapshot_id: Annotated[Optional[str], typer.Option(
              "--snapshot", help="Compare with this snapshot (else the newest).")]
          = None,
          alpha: Annotated[float, typer.Option(
              min=0.0001, max=0.5, help="False-alarm rate of the whole check.")] = 0.05,
          permutations: Annotated[int, typer.Option(
              min=99, help="Permutations for the MMD p-value.")] = 1000,
          kernel: Annotated[str, typer.Option(
              help="Hamming kernel over 'word' or 'char' sequences.")] = "word",
          seed: Annotated[Optional[int], typer.Option(
              help="Seed sampling and permutations, for a repeatable check.")] = None,
          json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
          = False,
          config: ConfigOption = None) -> None:
    """Draw fresh samples from ROUTE and test them against its snapshot.

    Exit code: 0 no drift, 1 drift, 2 the check could not run."""
    from unwalled.drift import CheckOptions, DriftStore, check_route
    from unwalled.drift.report import print_report, to_json

    if kernel not in ("char", "word"):
        raise typer.BadParameter("use 'char' or 'word'.", param_hint="--kernel")
    options = CheckOptions(alpha=alpha, permutations=permutations, kernel=kernel,
                           seed=seed)

    async def run(runtime: Runtime) -> DriftReport:
        return await check_route(runtime, DriftStore(runtime.ledger), route, options,
                                 snapshot_id)

    report = _with_runtime(config, run)
    if json:
        typer.echo(to_json(report))
    else:
        print_report(report)
    raise typer.Exit(1 if report.drifted else 0)


@app.command("list")
def list_(route: Annotated[Optional[str], typer.Argument(
              help="Only this route.")] = None,
          limit: Annotated[int, typer.Option("--limit", "-n")] = 10,
          config: ConfigOption = None) -> None:
    """Snapshots and the latest checks in the ledger."""
    from unwalled.config import load_config
    from unwalled.drift import DriftStore
    from unwalled.ledger import Ledger

    ledger = Ledger(load_config(config).ledger.url)
    try:
        store = DriftStore(ledger)
        snapshots, checks = store.snapshots(route), store.checks(route, limit)
    finally:
        ledger.close()
    shots = Table("snapshot", "route", "taken", "probe set", "digest", "samples",
                  title="snapshots")
    for row in snapshots:
        shots.add_row(row["id"], row["route"], _when(row["ts"]), row["probe_set"],
                      row["probe_digest"], str(row["samples"]))
    runs = Table("check", "route", "when", "status", "p", "moved", title="checks")
    for row in checks:
        p = "-" if row["p_value"] is None else f"{row['p_value']:.3g}"
        runs.add_row(row["id"], row["route"], _when(row["ts"]), row["status"], p,
                     ", ".join(row["moved"]) or (row["error"] or "")[:60])
    console = cli_console()
    console.print(shots)
    console.print(runs)


def _with_runtime(config: str | None,
                  work: Callable[[Runtime], Awaitable[Result]]) -> Result:
    """Run ``work(runtime)`` on a fresh runtime, closing it (and its ledger) after."""
    from unwalled.runtime import Runtime

    runtime = Runtime.from_config(config)

    async def main() -> Result:
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    return asyncio.run(main())


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
