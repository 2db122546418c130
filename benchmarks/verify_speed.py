"""Time to verify a 1 kB answer under a contract, and what the contract costs at
the gateway.

Part 1, in process: a 1 kB JSON answer under a contract with an output schema
and the secrets, PII, URL and SQL checks, verified many times; p50 and p99 per
verification, for a passing answer and for one that breaks every check, and
the p50 of each check alone. Goal: p99 under 2 ms.

Part 2, on loopback: the gateway with its ledger on (SQLite) in front of the
fast fixed-answer upstream (``python -m unwalled.testing.upstream``), which
answers with that same 1 kB JSON. One route without a contract, one with it;
wrk at concurrency 1 and 32, in alternating rounds with the upstream called
directly, so that noise on this shared machine hits all alike.

    .venv/bin/python benchmarks/verify_speed.py [--iterations 5000] [--seconds 6]

Writes verify_speed.md beside this file.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from pathlib import Path

import orjson

HERE = Path(__file__).parent
CONTRACT = {
    "name": "bench",
    "output": {"schema": {
        "type": "object",
        "properties": {
            "reply": {"type": "string", "maxLength": 900},
            "sql": {"type": "string"},
            "links": {"type": "array", "items": {"type": "string", "format": "uri"}},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "category": {"enum": ["cards", "transfers", "fees", "account"]},
        },
        "required": ["reply", "sql", "category"],
        "additionalProperties": False}},
    "checks": [
        "no_secrets",
        "no_pii",
        {"urls": {"allow": ["bank.example"]}},
        {"sql": {"field": "/sql", "tables": ["accounts", "transactions"]}},
    ],
    "on_fail": "reject",
    "decoding": "free",
}
REPLY = (
    "Thanks for getting in touch about the card payment that you do not recognise. "
    "Card payments usually show as pending for up to seven days before they settle, "
    "and the name on your statement can differ from the shop's trading name. Please "
    "check the merchant details in the app under Payments, then Card, and compare "
    "the amount and the date with your receipts. If you still do not recognise it, "
    "freeze the card from the same screen and tell us through the help page; we will "
    "open a dispute and keep you updated by message. You can read more about how "
    "disputes work at https://help.bank.example/disputes and about pending payments "
    "at https://bank.example/help/pending. We never ask for your PIN or your full "
    "card number, so do not share them with anyone, including our staff. "
)
GOOD = {"reply": REPLY[:760],
        "sql": "SELECT t.id, t.amount, t.merchant FROM transactions t JOIN accounts a "
               "ON a.id = t.account_id WHERE a.id = 42 AND t.status = 'pending' "
               "ORDER BY t.created_at DESC LIMIT 20",
        "links": ["https://help.bank.example/disputes"],
        "confidence": 0.82, "category": "cards"}
BAD = {**GOOD,
       "reply": REPLY[:560] + " Call +44 20 7946 0958 or write to jane.doe@example.com "
                "with card 4111 1111 1111 1111; use key AKIAIOSFODNN7EXAMPLE and see "
                "https://evil.example/x?d=1 ok.",
       "sql": "DELETE FROM users WHERE id = 42"}


def answer_text(value: dict) -> str:
    return "```json\n" + orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n```"


def percentiles(samples_ns: list[int]) -> tuple[float, float, float]:
    ordered = sorted(samples_ns)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6  # noqa
    return pick(0.50), pick(0.99), statistics.fmean(ordered) / 1e6


def time_calls(fn, iterations: int, clock=time.thread_time_ns) -> list[int]:
    """Nanoseconds per call. The default clock is this thread's CPU time: on a
    shared machine, wall time per call mostly measures when the scheduler took
    the core away, which is no cost of the verification."""
    for _ in range(min(500, iterations)):  # warm caches, lazy imports, branch paths
        fn()
    gc.collect()
    samples = []
    for _ in range(iterations):
        start = clock()
        fn()
        samples.append(clock() - start)
    return samples


def part_one(iterations: int) -> dict:
    from unwalled.contracts import Verifier, parse_contract
    from unwalled.contracts.checks.base import Answer

    verifier = Verifier(parse_contract(CONTRACT))
    good, bad = answer_text(GOOD), answer_text(BAD)
    assert verifier.verify(good).passed, verifier.verify(good).violations
    failing = verifier.verify(bad)
    assert {v.check for v in failing.violations} >= {"secrets", "pii", "urls", "sql"}
    results = {"bytes_good": len(good.encode()), "bytes_bad": len(bad.encode()),
               "violations_bad": len(failing.violations),
               "pass": percentiles(time_calls(lambda: verifier.verify(good), iterations)),
               "fail": percentiles(time_calls(lambda: verifier.verify(bad), iterations)),
               "wall": percentiles(time_calls(lambda: verifier.verify(good), iterations,
                                              time.perf_counter_ns))}
    parsed = verifier.verify(good).parsed
    answer = Answer(text=good, value=parsed, has_value=True)
    per_check = {"json extraction": lambda: verifier.json.extract(good,
                                                                  verifier.schema.is_valid),
                 "schema": lambda: verifier.schema(answer)}
    for check in verifier.checks:
        per_check[check.kind] = (lambda c=check: c(answer))
    results["checks"] = {name: percentiles(time_calls(fn, max(1000, iterations // 5)))
                         for name, fn in per_check.items()}
    return results


def part_two(seconds: int, rounds: int) -> dict:
    import sqlite3

    from harness import PYTHON, free_port, process, upstream, workdir, wrk

    body = ('{"model": "%s", "max_tokens": 300, '
            '"messages": [{"role": "user", "content": "Why this payment?"}]}')
    with upstream(answer_text(GOOD)) as up, workdir() as tmp:
        config = tmp / "unwalled.yaml"
        (tmp / "bench.contract.yaml").write_text(orjson.dumps(CONTRACT).decode())
        config.write_text(f"""
ledger: {{url: "sqlite:///{tmp / 'ledger.db'}"}}
backends:
  up: {{type: openai, base_url: "{up}/v1"}}
routes:
  plain: {{targets: [up/fixed], retries: 0}}
  guarded: {{targets: [up/fixed], retries: 0, contract: bench.contract.yaml}}
""")
        port = free_port()
        gateway = [PYTHON, "-m", "unwalled", "serve", "-c", str(config), "--port",
                   str(port)]
        with process(gateway, port, tmp / "gateway.log"):
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            runs = {"upstream direct": (f"{up}/v1/chat/completions", "x"),
                    "gateway, no contract": (url, "plain"),
                    "gateway, contract": (url, "guarded")}
            for target, route in runs.values():
                wrk(target, body % route, 8, 2)
            table: dict = {}
            for connections in (1, 32):
                table[connections] = {name: [] for name in runs}
                for _ in range(rounds):
                    for name, (target, route) in runs.items():
                        table[connections][name].append(
                            wrk(target, body % route, connections, seconds))
            time.sleep(1.5)  # the ledger writer commits its last batch
        db = sqlite3.connect(tmp / "ledger.db")
        ledger = dict(db.execute("select route, count(*) from requests group by route"))
        verdicts = db.execute("select count(*) from requests where route = 'guarded' "
                              "and verdict like '%\"passed\":true%'").fetchone()[0]
    return {"table": table, "ledger": ledger, "verdicts": verdicts}


def report(one: dict, two: dict | None, args: argparse.Namespace) -> str:
    p50, p99, mean = one["pass"]
    f50, f99, fmean = one["fail"]
    lines = [
        "# Verification speed, and what a contract costs at the gateway",
        "",
        "Rerun with `.venv/bin/python benchmarks/verify_speed.py` (needs `wrk`: "
        "`apt-get install -y wrk`). Machine: 2 shared cores; other work ran at the "
        "same time (load average {:.1f} at the start, {:.1f} at the end), so read "
        "ratios within one run rather than absolute figures.".format(
            args.load_before, args.load_after),
        "",
        "## Time per verification (in process)",
        "",
        f"Contract: an output schema (2020-12, with `format: uri`, an enum, bounds) "
        f"and the `secrets`, `pii`, `urls` (allow-list) and `sql` (read-only, table "
        f"allow-list, on the `/sql` field) checks. The answer is {one['bytes_good']} "
        f"bytes of JSON in a code fence (extracted, then checked); the failing one is "
        f"{one['bytes_bad']} bytes and breaks every check ({one['violations_bad']} "
        f"violations). {args.iterations} timed verifications each, after warm-up, "
        "timed in CPU time of the verifying thread (wall time, which adds the "
        "scheduler's pauses on this shared machine, is in the last row).",
        "",
        "| answer | p50 | p99 | mean |",
        "|---|---|---|---|",
        f"| passing | {p50:.3f} ms | {p99:.3f} ms | {mean:.3f} ms |",
        f"| breaking every check | {f50:.3f} ms | {f99:.3f} ms | {fmean:.3f} ms |",
        "| passing, wall time | {:.3f} ms | {:.3f} ms | {:.3f} ms |".format(*one["wall"]),
        "",
        f"Goal: p99 under 2 ms: **{'met' if max(p99, f99) < 2 else 'not met'}**. "
        "LLM Guard publishes 220-320 ms for its basic scan; the passing answer's p99 "
        f"here is {260 / p99:.0f}x below the middle of that range.",
        "",
        "Each part alone, on the passing answer (p50 / p99):",
        "",
        "| part | p50 | p99 |",
        "|---|---|---|",
    ]
    for name, (c50, c99, _) in one["checks"].items():
        lines.append(f"| {name} | {c50:.3f} ms | {c99:.3f} ms |")
    if two is not None:
        lines += part_two_lines(two, args)
    return "\n".join(lines) + "\n"


def part_two_lines(two: dict, args: argparse.Namespace) -> list[str]:
    lines = [
        "",
        "## At the gateway",
        "",
        f"wrk, {args.seconds} s per run, {args.rounds} alternating rounds, medians "
        "shown. The upstream answers every request with the 1 kB JSON above; the "
        "ledger (SQLite) is on.",
        "",
        "| concurrency | what | p50 | p99 | requests/s |",
        "|---|---|---|---|---|",
    ]
    added = {}
    for connections, runs in two["table"].items():
        medians = {}
        for name, results in runs.items():
            m = {f: statistics.median(getattr(r, f) for r in results)
                 for f in ("p50_ms", "p99_ms", "requests_per_s")}
            medians[name] = m
            lines.append(f"| {connections} | {name} | {m['p50_ms']:.2f} ms | "
                         f"{m['p99_ms']:.2f} ms | {m['requests_per_s']:,.0f} |")
        added[connections] = (
            medians["gateway, contract"]["p50_ms"]
            - medians["gateway, no contract"]["p50_ms"],
            medians["gateway, contract"]["requests_per_s"]
            / medians["gateway, no contract"]["requests_per_s"])
    errors = sum(r.errors for runs in two["table"].values() for rs in runs.values()
                 for r in rs)
    lines += [
        "",
        f"The contract adds {added[1][0]:.2f} ms at p50 at concurrency 1; at "
        f"concurrency 32 the gateway keeps {added[32][1]:.0%} of its throughput "
        "with the contract on. The gateway adds over the direct call: "
        + ", ".join(f"{_over(two, c):.2f} ms at concurrency {c}" for c in (1, 32))
        + f" (p50). Failed requests: {errors}. Ledger rows: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(two["ledger"].items()))
        + f"; rows under the contract with a passing verdict: {two['verdicts']}.",
    ]
    return lines


def _over(two: dict, connections: int) -> float:
    runs = two["table"][connections]
    med = lambda name: statistics.median(r.p50_ms for r in runs[name])  # noqa
    return med("gateway, no contract") - med("upstream direct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-gateway", action="store_true",
                        help="only part 1 (no wrk needed)")
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    one = part_one(args.iterations)
    print(f"verify p50/p99 ms: pass {one['pass'][:2]}, fail {one['fail'][:2]}")
    two = None if args.no_gateway else part_two(args.seconds, args.rounds)
    args.load_after = os.getloadavg()[0]
    out = HERE / "verify_speed.md"
    out.write_text(report(one, two, args))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
