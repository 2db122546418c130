"""``unwalled audit SUITE.yaml``: which candidate is the cheapest good-enough one.

Exit codes: 0 when a candidate meets the target, 1 when none does (so a CI job
fails), 2 for a bad suite or config.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from unwalled.cli.options import ConfigOption
from unwalled.cli.options import console as cli_console

NONE_MEETS_TARGET = 1


def register(app: typer.Typer) -> None:
    @app.command()
    def audit(suite: Annotated[Path, typer.Argument(help="The suite YAML file.")],
              out: Annotated[Optional[Path], typer.Option(
                  "--out", "-o", help="Folder for audit.json and audit.html "
                                      "(default: audit-SUITE_NAME).")] = None,
              concurrency: Annotated[int, typer.Option(
                  help="Calls in flight at once (local models still run one at "
                       "a time).")] = 4,
              executor: Annotated[str, typer.Option(
                  help="Where items run: local, or ray (a Ray cluster).")] = "local",
              cache: Annotated[Optional[Path], typer.Option(
                  help="Response cache file (default: beside a SQLite ledger).")]
              = None,
              no_cache: Annotated[bool, typer.Option(
                  "--no-cache", help="Ask every model again.")] = False,
              config: ConfigOption = None) -> None:
        """Run a suite against its candidates and recommend the cheapest good one."""
        summary = asyncio.run(_audit(suite, out, concurrency, executor, cache,
                                     no_cache, config))
        if summary["recommendation"]["candidate"] is None:
            raise typer.Exit(NONE_MEETS_TARGET)


async def _audit(suite_path: Path, out: Path | None, concurrency: int, executor: str,
                 cache_path: Path | None, no_cache: bool,
                 config: str | None) -> dict[str, Any]:
    from rich.console import Console

    from unwalled.audit import (
        ResponseCache, default_cache_path, load_dataset, load_suite, run_audit,
        summarise, terminal_table, write_reports,
    )
    from unwalled.audit.executor import executor_factory

    suite = load_suite(suite_path)
    dataset = load_dataset(suite)
    run_on = executor_factory(executor)
    runtime = _runtime(config)
    cache = None if no_cache else ResponseCache(
        cache_path or default_cache_path(runtime.config.ledger.url))
    console = Console(stderr=True)
    try:
        with _progress(console) as progress:
            task = progress.add_task(suite.name, total=len(dataset.items)
                                     * len(suite.candidates))
            run = await run_audit(
                suite, runtime, cache=cache, concurrency=concurrency,
                executor=run_on, dataset=dataset,
                on_result=lambda result: progress.advance(task))
    finally:
        await runtime.close()
        if cache is not None:
            cache.close()
    summary = summarise(run, runtime.config)
    # Piped output (CI logs) has no terminal width; 80 columns would crush the table.
    stdout = cli_console()
    terminal_table(summary, stdout)
    folder = out or Path(f"audit-{suite.name}")
    json_path, html_path = write_reports(summary, folder)
    stdout.print(f"reports: {json_path}  {html_path}")
    return summary


def _runtime(config: str | None) -> Any:
    from unwalled.runtime import Runtime

    return Runtime.from_config(config)


def _progress(console: Any) -> Any:
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)
