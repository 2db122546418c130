"""Throughput and added latency with the state of a multi-replica deployment
(ledger on PostgreSQL, circuit breaker in Redis) next to the single-machine
set-up (SQLite ledger, breaker in memory), in one run.

Three targets, each loaded by wrk against the same fast fixed-answer upstream
(``python -m unwalled.testing.upstream``), at concurrency 1 and 32, in
alternating rounds so that noise on this shared machine hits all alike:

- the upstream called directly (the floor);
- a gateway with SQLite and the in-memory breaker (one machine);
- a gateway with PostgreSQL and the Redis breaker (beyond one machine).

Afterwards each ledger is counted against the requests wrk sent. Writes
gateway_scale.md.

    .venv/bin/python benchmarks/gateway_scale.py [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from gateway_overhead import BODY, measure, median
from harness import PYTHON, WrkResult, free_port, process, upstream, workdir, wrk

HERE = Path(__file__).parent
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS = "redis://127.0.0.1:6379/0"


def gateway_config(tmp: Path, name: str, upstream_url: str, ledger: str,
                   redis: str | None) -> Path:
    config = tmp / f"{name}.yaml"
    state = f'state: {{redis_url: "{redis}"}}\n' if redis else ""
    config.write_text(f"""
ledger: {{url: "{ledger}"}}
{state}backends:
  up: {{type: openai, base_url: "{upstream_url}/v1"}}
routes:
  bench: {{targets: [up/fixed], retries: 0}}
""")
    return config


def scratch_schema() -> tuple[str, str]:
    schema = f"unwalled_bench_{uuid.uuid4().hex[:8]}"
    with sa.create_engine(POSTGRES).begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    return schema, f"{POSTGRES}?options=-csearch_path%3D{schema}"


def drop_schema(schema: str) -> None:
    engine = sa.create_engine(POSTGRES)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def count(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select count(*) from requests")).scalar_one()
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    schema, pg_url = scratch_schema()
    try:
        with upstream() as up, workdir() as tmp:
            ledgers = {"sqlite": f"sqlite:///{tmp / 'ledger.db'}", "postgres": pg_url}
            one_port, scale_port = free_port(), free_port()
            one = [PYTHON, "-m", "unwalled", "serve", "--port", str(one_port), "-c",
                   str(gateway_config(tmp, "one", up, ledgers["sqlite"], None))]
            scale = [PYTHON, "-m", "unwalled", "serve", "--port", str(scale_port), "-c",
                     str(gateway_config(tmp, "scale", up, ledgers["postgres"], REDIS))]
            with process(one, one_port, tmp / "one.log"), \
                    process(scale, scale_port, tmp / "scale.log"):
                urls = {
                    "direct": f"{up}/v1/chat/completions",
                    "SQLite + memory": f"http://127.0.0.1:{one_port}/v1/chat/completions",
                    "PostgreSQL + Redis":
                        f"http://127.0.0.1:{scale_port}/v1/chat/completions"}
                for url in urls.values():  # warm up connections and code paths
                    wrk(url, BODY, 8, 2)
                table = {c: measure(urls, c, args.seconds, args.rounds)
                         for c in (1, 32)}
                time.sleep(1.5)  # let the ledger writers commit their last batch
            # Warm-up requests are in the ledgers too; they are counted by wrk
            # only in aggregate, so compare rows with everything sent.
            rows = {"SQLite + memory": count(ledgers["sqlite"]),
                    "PostgreSQL + Redis": count(ledgers["postgres"])}
    finally:
        drop_schema(schema)
    report(table, args, rows)


def report(table: dict[int, dict[str, list[WrkResult]]], args: argparse.Namespace,
           rows: dict[str, int]) -> None:
    lines = [
        "# Gateway throughput with multi-replica state",
        "",
        "Written by `benchmarks/gateway_scale.py` (rerun it to refresh). wrk, one "
        f"thread, POST /v1/chat/completions, {args.seconds} s per measurement, "
        f"median of {args.rounds} alternating rounds; fixed-answer upstream; all on "
        "loopback on a shared 2-core machine (other work ran at the same time, so "
        "compare the rows with each other, not with another day's run).",
        "",
        "| concurrency | target | requests/s | p50 ms | p99 ms | added p50 ms "
        "| vs SQLite |",
        "|---|---|---|---|---|---|---|",
    ]
    for connections, results in table.items():
        floor = median(results["direct"], "p50_ms")
        single = median(results["SQLite + memory"], "requests_per_s")
        for name, runs in results.items():
            rps = median(runs, "requests_per_s")
            added = "" if name == "direct" else f"{median(runs, 'p50_ms') - floor:.2f}"
            ratio = "" if name == "direct" else f"{rps / single:.2f}x"
            lines.append(f"| {connections} | {name} | {rps:.0f} | "
                         f"{median(runs, 'p50_ms'):.2f} | {median(runs, 'p99_ms'):.2f} "
                         f"| {added} | {ratio} |")
    errors = sum(r.errors for c in table.values() for rs in c.values() for r in rs)
    sent = {name: sum(r.requests for c in table.values() for r in c[name])
            for name in rows}
    lines += [
        "",
        f"- non-2xx or socket errors across all runs: {errors}",
    ]
    lines += ["", "Where the difference comes from: with the breaker in Redis each "
              "call makes one round trip to Redis on the request path (the check; "
              "a success on a target with no recorded failures sends nothing "
              "more). The PostgreSQL ledger is written off the request path, but "
              "its writer thread shares the process (and its GIL) with the "
              "event loop. Single-machine figures for SQLite alone, next to a "
              "minimal proxy, are in gateway_overhead.md.", ""]
    for name, count_ in rows.items():
        lines.append(f"- {name}: wrk sent {sent[name]} measured requests (plus "
                     f"warm-up); the ledger holds {count_} rows")
    text = "\n".join(lines) + "\n"
    (HERE / "gateway_scale.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
