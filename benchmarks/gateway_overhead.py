"""What the gateway adds over a direct call, next to a minimal proxy (the floor).

Four servers in one run, on loopback, against the same fast fixed-answer
OpenAI-compatible upstream (nginx when installed): the upstream called directly,
the floor proxy (aiohttp on uvloop, nothing else), and the Unwalled gateway with
its ledger on (SQLite), as one process and as two worker processes. Load comes
from wrk at concurrency 1 and 32, in alternating rounds so that noise on this
shared machine hits all alike. Writes gateway_overhead.md.

    .venv/bin/python benchmarks/gateway_overhead.py [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from pathlib import Path

from harness import PYTHON, WrkResult, fast_upstream, free_port, process, workdir, wrk

HERE = Path(__file__).parent
BODY = ('{"model": "bench", "max_tokens": 8, '
        '"messages": [{"role": "user", "content": "Say ok."}]}')


def gateway_config(tmp: Path, upstream_url: str) -> Path:
    config = tmp / "unwalled.yaml"
    config.write_text(f"""
ledger: {{url: "sqlite:///{tmp / 'ledger.db'}"}}
backends:
  up: {{type: openai, base_url: "{upstream_url}/v1"}}
routes:
  bench: {{targets: [up/fixed], retries: 0}}
""")
    return config


UNWALLED = "unwalled"
UNWALLED_2 = "unwalled, 2 workers"


def measure(urls: dict[str, str], connections: int, seconds: int,
            rounds: int) -> dict[str, list[WrkResult]]:
    results: dict[str, list[WrkResult]] = {name: [] for name in urls}
    for _ in range(rounds):
        for name, url in urls.items():
            results[name].append(wrk(url, BODY, connections, seconds))
    return results


def median(results: list[WrkResult], field: str) -> float:
    return statistics.median(getattr(r, field) for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with fast_upstream() as (up, upstream_name), workdir() as tmp:
        floor_port, gw_port, gw2_port = free_port(), free_port(), free_port()
        config = str(gateway_config(tmp, up))
        floor = [PYTHON, str(HERE / "floor_proxy.py"), "--port", str(floor_port),
                 "--upstream", up]
        gateway = [PYTHON, "-m", "unwalled", "serve", "-c", config,
                   "--port", str(gw_port)]
        gateway2 = [PYTHON, "-m", "unwalled", "serve", "-c", config,
                    "--port", str(gw2_port), "--workers", "2"]
        with process(floor, floor_port, tmp / "floor.log"), \
                process(gateway, gw_port, tmp / "gateway.log"), \
                process(gateway2, gw2_port, tmp / "gateway2.log"):
            urls = {"direct": f"{up}/v1/chat/completions",
                    "floor proxy": f"http://127.0.0.1:{floor_port}/v1/chat/completions",
                    UNWALLED: f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                    UNWALLED_2: f"http://127.0.0.1:{gw2_port}/v1/chat/completions"}
            for url in urls.values():  # warm up connections and code paths
                wrk(url, BODY, 8, 2)
            table = {c: measure(urls, c, args.seconds, args.rounds) for c in (1, 32)}
            time.sleep(1.5)  # let the ledger writers commit their last batch
        sent = sum(r.requests for c in table.values()
                   for name in (UNWALLED, UNWALLED_2) for r in c[name])
        errors = sum(r.errors for c in table.values() for rs in c.values() for r in rs)
        rows = sqlite3.connect(tmp / "ledger.db").execute(
            "select count(*) from requests").fetchone()[0]
    args.upstream = upstream_name
    report(table, args, sent, rows, errors)


def report(table: dict[int, dict[str, list[WrkResult]]], args: argparse.Namespace,
           sent: int, ledger_rows: int, errors: int) -> None:
    lines = [
        "# Gateway overhead", "",
        f"Run: `{Path(__file__).name} --seconds {args.seconds} --rounds {args.rounds}` on "
        f"{time.strftime('%Y-%m-%d')}, 2 cores shared by wrk, the upstream "
        f"({args.upstream}) and the server under test. Medians over rounds; added "
        "latency is the difference to calling the upstream directly in the same "
        "run.", "",
        "| concurrency | server | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |",
        "|---|---|---|---|---|---|---|"]
    for connections, results in table.items():
        base50 = median(results["direct"], "p50_ms")
        base99 = median(results["direct"], "p99_ms")
        for name, runs in results.items():
            p50, p99 = median(runs, "p50_ms"), median(runs, "p99_ms")
            added = "" if name == "direct" else f"{p50 - base50:.3f}"
            added99 = "" if name == "direct" else f"{p99 - base99:.3f}"
            lines.append(f"| {connections} | {name} | {median(runs, 'requests_per_s'):,.0f}"
                         f" | {p50:.3f} | {p99:.3f} | {added} | {added99} |")
    floor = median(table[32]["floor proxy"], "requests_per_s")
    one = median(table[32][UNWALLED], "requests_per_s")
    two = median(table[32][UNWALLED_2], "requests_per_s")
    lines += ["", f"At concurrency 32 Unwalled serves {one / floor:.0%} of the floor "
              f"proxy's throughput as one process and {two / floor:.0%} with two "
              "workers (the floor proxy is one process).",
              f"Ledger on: the two gateways answered {sent:,} measured requests (plus "
              f"warm-up) and their shared ledger holds {ledger_rows:,} rows. Failed "
              f"requests across all servers: {errors}.", ""]
    text = "\n".join(lines)
    print(text)
    (HERE / "gateway_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
