"""Soak: minutes of concurrent load through a gateway process, faults injected
upstream, a SIGTERM in the middle and a restart; then the ledger is counted.

    python benchmarks/soak.py --seconds 600 --concurrency 48

What it checks and reports (appended to benchmarks/soak.md with --write):

- every request the gateway accepted (answered with a status line) is one
  ledger record: ``ledger records == accepted requests``;
- the SIGTERM drains: requests in flight when it arrives finish, and the
  process exits on its own;
- the gateway's resident memory after warm-up, sampled every few seconds, and
  its growth over each half of the run (goal: under 20 MB).

The upstream is ``python -m unwalled.testing.upstream --cycle`` playing a script
in which about one step in three is a fault (5xx, 429, reset, malformed JSON,
truncated or stalled stream, timeout). The route has two targets on that
upstream, one per wire format, so faults are absorbed by retry or fallback or
end in a clean error. Load is from loopback only, bounded by --seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from _gateway import free_port, rss_mb, start_gateway, stop
from harness import PYTHON, process

HERE = Path(__file__).resolve().parent

FAULT_SCRIPT = [
    "fine answer one", {"status": 500}, "fine answer two",
    {"text": "streamed slowly", "chunk_delay": 0.02}, {"status": 503},
    "fine answer three", {"status": 429, "retry_after": 0}, "fine answer four",
    {"reset": True}, "fine answer five", {"malformed": True}, "fine answer six",
    {"truncate": True, "text": "cut short"}, "fine answer seven",
    {"delay": 3}, "fine answer eight", {"status": 502}, "fine answer nine",
    {"omit_usage": True, "text": "no usage"}, {"keepalive": True, "text": "kept"},
]


@dataclass
class Tally:
    accepted: int = 0
    refused: int = 0
    disconnected: int = 0
    broken_bodies: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    in_flight: int = 0
    in_flight_at_sigterm: int = 0


def config(upstream_url: str, ledger_url: str, redis_url: str | None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "ledger": {"url": ledger_url, "store": "redacted"},
        "backends": {
            "up": {"type": "openai", "base_url": upstream_url + "/v1"},
            "alt": {"type": "anthropic", "base_url": upstream_url},
        },
        "routes": {"soak": {"targets": ["up/m", {"target": "alt/m", "retries": 1}],
                            "retries": 1, "timeout": 1.0,
                            "backoff": {"initial": 0.02, "max": 0.2}}},
    }
    if redis_url:
        raw["state"] = {"redis_url": redis_url}
    return raw


def request_for(kind: str, base: str) -> tuple[str, dict[str, Any]]:
    stream = kind.endswith("stream")
    text = [{"role": "user", "content": f"soak {uuid.uuid4().hex[:6]}"}]
    if kind.startswith("openai"):
        return base + "/v1/chat/completions", {
            "model": "soak", "messages": text, "max_tokens": 16, "stream": stream}
    return base + "/v1/messages", {"model": "soak", "max_tokens": 16,
                                   "messages": text, "stream": stream}


KINDS = ["openai", "openai-stream", "anthropic", "anthropic-stream"]


async def worker(base: str, tally: Tally, deadline: float,
                 session: aiohttp.ClientSession) -> None:
    while time.monotonic() < deadline:
        url, body = request_for(random.choice(KINDS), base)
        tally.in_flight += 1
        try:
            async with session.post(url, json=body) as response:
                tally.accepted += 1
                tally.statuses[response.status] += 1
                try:
                    await response.read()
                except aiohttp.ClientPayloadError:
                    tally.broken_bodies += 1
        except aiohttp.ClientConnectorError:
            tally.refused += 1  # the gateway is restarting: nothing was accepted
            await asyncio.sleep(0.05)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            tally.disconnected += 1
        finally:
            tally.in_flight -= 1


async def load(base: str, tally: Tally, seconds: float, concurrency: int) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(worker(base, tally, deadline, session)
                               for _ in range(concurrency)))


class Sampler:
    """RSS of the current gateway process every ``every`` seconds."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.samples: list[tuple[float, int, float]] = []  # (t, incarnation, MB)
        self.pid: int | None = None
        self.incarnation = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            pid = self.pid
            if pid is None:
                continue
            try:
                self.samples.append((time.monotonic() - self.started,
                                     self.incarnation, rss_mb(pid)))
            except (FileNotFoundError, RuntimeError):
                pass

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def growth(samples: list[tuple[float, int, float]], incarnation: int,
           warmup: float) -> dict[str, float]:
    mine = [s for s in samples if s[1] == incarnation]
    if not mine:
        return {}
    start = mine[0][0]
    after = [mb for t, _, mb in mine if t - start >= warmup] or [mine[-1][2]]
    return {"after_warmup_mb": after[0], "end_mb": after[-1], "peak_mb": max(after),
            "growth_mb": after[-1] - after[0]}


def ledger_url(kind: str, workdir: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'ledger.db'}", None
    import sqlalchemy as sa

    schema = f"unwalled_soak_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(kind)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{kind}?options=-csearch_path%3D{schema}", drop


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="unwalled-soak-"))
    script = workdir / "faults.json"
    script.write_text(json.dumps(FAULT_SCRIPT))
    url, cleanup = ledger_url(args.ledger, workdir)
    up_port, gw_port = free_port(), free_port()
    base = f"http://127.0.0.1:{gw_port}"
    tally = Tally()
    result: dict[str, Any] = {}
    upstream = [PYTHON, "-m", "unwalled.testing.upstream", "--port", str(up_port),
                "--script", str(script), "--cycle"]
    with process(upstream, up_port, workdir / "upstream.log"), \
            Sampler(args.sample_every) as sampler:
        raw = config(f"http://127.0.0.1:{up_port}", url, args.redis)
        gateway = start_gateway(raw, workdir, gw_port)
        sampler.pid = gateway.pid

        async def drive() -> None:
            nonlocal gateway
            loading = asyncio.create_task(load(base, tally, args.seconds,
                                               args.concurrency))
            await asyncio.sleep(args.seconds * args.sigterm_at)
            tally.in_flight_at_sigterm = tally.in_flight
            began = time.monotonic()
            code = await asyncio.to_thread(stop, gateway)
            result["drain_seconds"] = time.monotonic() - began
            result["exit_code_after_sigterm"] = code
            sampler.pid, sampler.incarnation = None, 1
            gateway = await asyncio.to_thread(start_gateway, raw, workdir, gw_port)
            sampler.pid = gateway.pid
            result["down_seconds"] = time.monotonic() - began
            await loading

        asyncio.run(drive())
        result["exit_code_at_end"] = stop(gateway)
    from unwalled.ledger import Ledger

    ledger = Ledger(url)
    records = ledger.count()
    outcomes = ledger.execute("select outcome, count(*) as n from requests "
                              "group by outcome")
    ledger.close()
    if cleanup:
        cleanup()
    half = args.seconds * args.sigterm_at
    result.update({
        "seconds": args.seconds, "concurrency": args.concurrency,
        "ledger": args.ledger.split("@")[-1], "redis": bool(args.redis),
        "accepted": tally.accepted, "ledger_records": records,
        "refused_while_down": tally.refused, "disconnected": tally.disconnected,
        "broken_bodies": tally.broken_bodies,
        "in_flight_at_sigterm": tally.in_flight_at_sigterm,
        "statuses": dict(sorted(tally.statuses.items())),
        "ledger_outcomes": {r["outcome"]: r["n"] for r in outcomes},
        "throughput_rps": tally.accepted / args.seconds,
        "memory_first_half": growth(sampler.samples, 0, min(args.warmup, half / 2)),
        "memory_second_half": growth(sampler.samples, 1, min(args.warmup, half / 2)),
    })
    return result


def report(result: dict[str, Any]) -> str:
    ok = result["ledger_records"] == result["accepted"]
    first, second = result["memory_first_half"], result["memory_second_half"]
    lines = [
        f"### Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"- {result['seconds']:.0f} s, {result['concurrency']} concurrent clients, "
        f"ledger `{result['ledger']}`, Redis breaker: {result['redis']}",
        f"- accepted requests: {result['accepted']} "
        f"({result['throughput_rps']:.0f}/s); ledger records: "
        f"{result['ledger_records']} -> {'equal' if ok else 'NOT EQUAL'}",
        f"- statuses seen by clients: {result['statuses']}",
        f"- ledger outcomes: {result['ledger_outcomes']}",
        f"- SIGTERM with {result['in_flight_at_sigterm']} requests in flight: "
        f"drained and exited (code {result['exit_code_after_sigterm']}) in "
        f"{result['drain_seconds']:.2f} s; back up after {result['down_seconds']:.2f} s",
        f"- while down: {result['refused_while_down']} connections refused (not "
        f"accepted); {result['disconnected']} requests saw the connection close "
        f"before a status line; {result['broken_bodies']} bodies cut after it",
        f"- gateway RSS, first half: {_memory(first)}",
        f"- gateway RSS, second half (after the restart): {_memory(second)}",
        "",
    ]
    return "\n".join(lines)


def _memory(m: dict[str, float]) -> str:
    if not m:
        return "no samples"
    return (f"{m['after_warmup_mb']:.1f} MB after warm-up, {m['end_mb']:.1f} MB at "
            f"the end (peak {m['peak_mb']:.1f}): growth {m['growth_mb']:+.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--sigterm-at", type=float, default=0.5,
                        help="Fraction of the run at which the gateway gets SIGTERM.")
    parser.add_argument("--warmup", type=float, default=60,
                        help="Seconds after each start before memory is compared.")
    parser.add_argument("--sample-every", type=float, default=2.0)
    parser.add_argument("--ledger", default="sqlite",
                        help="'sqlite', or a PostgreSQL URL (a scratch schema is "
                             "made and dropped).")
    parser.add_argument("--redis", default=None,
                        help="Redis URL for the breaker state, e.g. "
                             "redis://127.0.0.1:6379/0.")
    parser.add_argument("--write", action="store_true",
                        help="Append the report to benchmarks/soak.md.")
    args = parser.parse_args()
    result = run(args)
    text = report(result)
    print(text)
    print(json.dumps(result, indent=1))
    if args.write:
        with open(HERE / "soak.md", "a", encoding="utf-8") as file:
            file.write(text + "\n")


if __name__ == "__main__":
    main()
