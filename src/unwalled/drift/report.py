"""Drift reports for people (a terminal page) and for programs (JSON)."""

from __future__ import annotations

import datetime as dt

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from unwalled.drift.check import DriftReport

_NAMES = {"mmd": "completions (MMD)", "flip": "flips at temperature 0",
          "pass_rate": "contract pass rate", "length": "length (KS)",
          "tokens": "completion tokens (MWU)", "logprob": "log-probability (MWU)"}


def to_json(report: DriftReport) -> str:
    return orjson.dumps(report.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY).decode()


def print_report(report: DriftReport, console: Console | None = None) -> None:
    console = console or Console()
    console.print(_headline(report))
    console.print(_tests_table(report))
    moved = report.moved
    if moved:
        console.print("[bold]Probes that moved[/bold] (Benjamini-Hochberg, "
                      f"false discovery rate {report.alpha:g}):")
        for result in moved:
            console.print(f"  [bold]{escape(result.probe)}[/bold]: "
                          + escape("; ".join(result.changes)), highlight=False)
    elif report.drifted:
        console.print("No single probe moved enough to be named: the change is "
                      "spread thin across probes. Draw more samples to localise it.")
    else:
        console.print("No probe moved.")


def _headline(report: DriftReport) -> str:
    taken = (dt.datetime.fromtimestamp(report.snapshot_ts).strftime("%Y-%m-%d %H:%M")
             if report.snapshot_ts else "?")
    verdict = "[bold red]DRIFT[/bold red]" if report.drifted else \
        "[bold green]no drift[/bold green]"
    return (f"Route [bold]{report.route}[/bold]: {verdict} "
            f"(p = {report.p_value:.3g}, alpha {report.alpha:g}, Holm over "
            f"{len(report.tests)} tests)\n"
            f"snapshot {report.snapshot_id or '-'} taken {taken}: "
            f"{report.reference_samples} samples; fresh: {report.fresh_samples} "
            f"samples in {report.seconds:.1f} s")


def _tests_table(report: DriftReport) -> Table:
    table = Table("test", "p", "adjusted p", "verdict", "what it saw")
    for test in report.tests:
        flag = "[red]moved[/red]" if test.adjusted < report.alpha else "held"
        table.add_row(_NAMES.get(test.name, test.name), f"{test.p_value:.3g}",
                      f"{test.adjusted:.3g}", flag, escape(test.detail))
    return table
