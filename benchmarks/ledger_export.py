"""Ledger export: memory stays flat as the ledger grows, and how fast rows go out.

Fills SQLite ledgers of two sizes (each request with two attempts, a verdict and
about 400 bytes of prompt and answer), then runs ``unwalled ledger export`` on
each in a fresh process, as a user would, for JSONL and CSV, and reads that
process's peak resident memory. Flat memory means the larger ledger's export
peaks no higher than the smaller one's. Writes ledger_export.md beside this file.

    .venv/bin/python benchmarks/ledger_export.py [--rows 50000 400000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

from harness import PYTHON, ROOT, workdir

from unwalled.ledger import AttemptRecord, Ledger, Record

HERE = Path(__file__).parent
PROMPT = "Where is my new card? I ordered it two weeks ago and it has not come. " * 3
ANSWER = '{"intent": "card_arrival", "note": "' + "checked " * 20 + '"}'


def fill(url: str, rows: int) -> None:
    ledger = Ledger(url, run_migrations=True)
    start = 1_700_000_000.0
    for i in range(rows):
        ledger.record(Record(
            id=f"r{i:09d}", ingress="openai", route=("triage", "support")[i % 2],
            status=200, outcome="ok", latency_ms=12.5, ts=start + i * 0.01,
            target="local/smollm2-135m", prompt_tokens=40, completion_tokens=30,
            cost=0.00001, contract="intent", prompt=PROMPT, completion=ANSWER,
            verdict={"passed": True, "action": "pass", "attempts": 1},
            attempts=[AttemptRecord("vllm/qwen3-8b", "error", 3.0, "connection refused",
                                    "backend_unavailable", None),
                      AttemptRecord("local/smollm2-135m", "ok", 9.5)]))
    ledger.close()


PEAK = """
import atexit, sys
def peak(path=sys.argv[1]):
    status = open("/proc/self/status").read()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    open(path, "w").write(kib)
atexit.register(peak)
sys.argv = ["unwalled", *sys.argv[2:]]
from unwalled.cli import main
main()
"""
"""Runs the CLI and, as it exits, writes its own peak resident memory (VmHWM).
Not getrusage: a child's ru_maxrss also counts the parent's pages it was forked
with, and the parent here has just written the whole ledger."""


def export(folder: Path, fmt: str) -> tuple[float, float, int]:
    """Seconds, peak RSS in MiB of the exporting process, and bytes written."""
    out, peak = folder / f"out.{fmt}", folder / "peak.kib"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    began = time.perf_counter()
    subprocess.run([PYTHON, "-c", PEAK, str(peak), "ledger", "export", "-f", fmt,
                    "-o", str(out), "-c", str(folder / "unwalled.yaml")],
                   env=env, check=True, capture_output=True)
    seconds = time.perf_counter() - began
    return seconds, int(peak.read_text()) / 1024, out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 400_000])
    args = parser.parse_args()
    results = []
    with workdir() as tmp:
        for rows in sorted(args.rows):
            folder = tmp / f"n{rows}"
            folder.mkdir()
            url = f"sqlite:///{folder / 'ledger.db'}"
            (folder / "unwalled.yaml").write_text(f'ledger: {{url: "{url}"}}\n')
            fill(url, rows)
            db_mib = (folder / "ledger.db").stat().st_size / 2**20
            for fmt in ("jsonl", "csv"):
                seconds, peak, size = export(folder, fmt)
                results.append((rows, db_mib, fmt, seconds, peak, size / 2**20))
                print(f"{rows:,} rows {fmt}: {seconds:.1f} s, peak {peak:.0f} MiB")
    write_report(results)


def write_report(results: list[tuple[int, float, str, float, float, float]]) -> None:
    lines = [
        "# Ledger export: flat memory",
        "",
        f"Run: `ledger_export.py` on {time.strftime('%Y-%m-%d')}. Each row is one "
        "`unwalled ledger export` in a fresh process (its own interpreter start "
        "included), on a SQLite ledger whose requests each carry two attempts, a "
        "verdict and about 400 bytes of text.",
        "",
        "| requests | ledger MiB | format | seconds | requests/s | output MiB | "
        "peak RSS MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for rows, db_mib, fmt, seconds, peak, out_mib in results:
        lines.append(f"| {rows:,} | {db_mib:.0f} | {fmt} | {seconds:.1f} | "
                     f"{rows / seconds:,.0f} | {out_mib:.0f} | {peak:.0f} |")
    small = {fmt: peak for rows, _, fmt, _, peak, _ in results
             if rows == results[0][0]}
    large = {fmt: peak for rows, _, fmt, _, peak, _ in results
             if rows == results[-1][0]}
    ratio = results[-1][0] / results[0][0]
    lines += ["", f"{ratio:.0f} times the requests: peak memory "
              + ", ".join(f"{fmt} {large[fmt] / small[fmt]:.2f} times" for fmt in small)
              + " that of the smaller export. The export reads 1,000 requests a page "
              "(keyset pages on time and id), so its memory does not grow with the "
              "ledger."]
    (HERE / "ledger_export.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
