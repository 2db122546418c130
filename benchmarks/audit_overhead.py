"""Audit overhead per item, excluding model time, and how total time scales.

The model is the mock backend: with no delay it costs nothing, so the time per
item is what the audit itself adds (request building, routing, the ledger row,
scoring, the contract check, the cache); with a fixed delay it stands in for a
remote model, to show what concurrency buys. Results are ratios within one run
(the machine is shared), written to audit_overhead.md beside this file.

    .venv/bin/python benchmarks/audit_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import tempfile
import time
from pathlib import Path

from unwalled.audit import ResponseCache, parse_suite, run_audit, summarise
from unwalled.config import parse_config
from unwalled.ledger import Ledger
from unwalled.runtime import Runtime

LABELS = [f"label_{i}" for i in range(20)]


def write_data(folder: Path, items: int) -> None:
    with (folder / "test.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        for i in range(items):
            writer.writerow([f"{LABELS[i % 20]} message number {i}", LABELS[i % 20]])


def suite_for(folder: Path, items: int):
    return parse_suite({
        "name": "overhead", "data": {"test": "test.csv"}, "input": "{text}",
        "expected": "category", "labels": LABELS, "scorer": "normalised",
        "output": {"field": "intent"}, "target_accuracy": 0.5,
        "contract": {"schema": {"type": "object", "required": ["intent"]}},
        "sample": {"size": items, "seed": 1},
        "candidates": [{"name": "mock", "target": "bench/m"}],
    }, folder=folder)


async def one_run(folder: Path, items: int, concurrency: int, delay: float,
                  cache: ResponseCache | None) -> float:
    config = parse_config({
        "ledger": {"url": f"sqlite:///{folder / 'ledger.db'}", "store": "redacted"},
        "backends": {"bench": {"type": "mock", "script": [
            {"text": '{"intent": "label_3"}', "delay": delay}]}}})
    # Opening the ledger (migrations) is a one-off per process, not per item.
    runtime = Runtime(config, Ledger(config.ledger.url))
    suite = suite_for(folder, items)
    started = time.perf_counter()
    try:
        run = await run_audit(suite, runtime, cache=cache, concurrency=concurrency)
        summarise(run, config)
        runtime.ledger.flush()
        return time.perf_counter() - started
    finally:
        await runtime.close()


def timed(items: int, concurrency: int, delay: float, repeats: int,
          cached: bool = False) -> float:
    """Median seconds of ``repeats`` runs, each in a fresh folder."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_data(folder, items)
            cache = ResponseCache(folder / "cache.db") if cached else None
            if cached:
                asyncio.run(one_run(folder, items, concurrency, delay, cache))
            times.append(asyncio.run(one_run(folder, items, concurrency, delay, cache)))
            if cache:
                cache.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    sizes = [50, 200] if args.quick else [50, 200, 800]
    repeats = 1 if args.quick else 3
    lines = ["# Audit overhead", "",
             "Produced by `benchmarks/audit_overhead.py` on the mock backend (2 "
             "shared cores; medians of " f"{repeats} run(s)). Time is the whole "
             "audit: data loading, requests, routing, ledger rows (flushed), "
             "scoring, contract checks and the summary; not opening the ledger.",
             ""]

    timed(20, 1, 0.0, 1)  # warm up: imports, scikit-learn and SQLite first use
    lines += ["## Overhead per item (model time zero)", "",
              "| items | concurrency | total s | ms per item |", "|---|---|---|---|"]
    for items in sizes:
        for concurrency in (1, 8):
            total = timed(items, concurrency, 0.0, repeats)
            lines.append(f"| {items} | {concurrency} | {total:.2f} | "
                         f"{total / items * 1000:.2f} |")
            print(lines[-1], flush=True)

    items = sizes[-1]
    cached = timed(items, 8, 0.0, repeats, cached=True)
    lines += ["", f"A rerun answered wholly from the response cache: {items} items in "
              f"{cached:.2f} s ({cached / items * 1000:.2f} ms per item, no model "
              "calls, no ledger rows).", ""]

    delay = 0.05
    lines += ["## Scaling with a 50 ms model", "",
              "| items | concurrency | total s | speed-up over concurrency 1 |",
              "|---|---|---|---|"]
    for items in sizes[:2]:
        base = timed(items, 1, delay, 1)
        lines.append(f"| {items} | 1 | {base:.2f} | 1.0 |")
        for concurrency in (4, 16):
            total = timed(items, concurrency, delay, 1)
            lines.append(f"| {items} | {concurrency} | {total:.2f} | "
                         f"{base / total:.1f} |")
            print(lines[-1], flush=True)
    lines += ["", "Reading: the audit's own cost per item is the ms-per-item column "
              "(total time grows linearly with items); with a model that waits, "
              "concurrency N comes close to an N-fold speed-up. An in-process "
              "(local) model answers one call at a time, so concurrency does not "
              "speed it up: there, total time is items times model time."]
    out = Path(__file__).with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
