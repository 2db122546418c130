"""The ledger: versioned migrations, one row per request with its attempts,
redaction of stored text, and the readers behind the CLI."""

from __future__ import annotations

import sqlalchemy as sa

from unwalled.backends.base import ChatRequest, Message
from unwalled.backends.mock import MockBackend
from unwalled.config import parse_config
from unwalled.errors import RoutingError
from unwalled.ledger import Ledger
from unwalled.runtime import CallInfo, Runtime


def test_migrations_create_the_schema_and_are_versioned(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    Ledger(url).close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(sa.text("select version_num from alembic_version")).scalar()
        tables = set(sa.inspect(conn).get_table_names())
    assert version == _newest_migration()
    assert {"requests", "attempts", "alembic_version"} <= tables
    Ledger(url).close()  # a second open is a no-op upgrade, not an error


def _newest_migration() -> str:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from unwalled.ledger.store import MIGRATIONS

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    (head,) = ScriptDirectory.from_config(config).get_heads()  # one head, no branch
    return head


def runtime_with(tmp_path, script, store="redacted"):
    config = parse_config({
        "ledger": {"url": f"sqlite:///{tmp_path / 'l.db'}", "store": store},
        "backends": {"m": {"type": "mock"}, "n": {"type": "mock"}},
        "routes": {"r": {"targets": ["m/x", "n/y"], "retries": 0}},
        "prices": {"m/x": {"input_per_mtok": 1000, "output_per_mtok": 2000}}})
    runtime = Runtime(config, Ledger(config.ledger.url))
    runtime.backends["m"] = MockBackend("m", script=script)
    runtime.backends["n"] = MockBackend("n", script=[{"error": {"status": 500}}])
    runtime.router.backends = runtime.backends
    return runtime


async def test_success_failure_and_fallback_each_make_one_row(tmp_path):
    runtime = runtime_with(tmp_path, ["fine", {"error": {"status": 503}}])
    request = ChatRequest([Message("user", "mail me at ann@example.com")])
    await runtime.complete("r", request, CallInfo(request_id="one"))
    try:
        await runtime.complete("r", request, CallInfo(request_id="two"))
    except RoutingError:
        pass
    assert runtime.ledger.flush()
    rows = {r["id"]: r for r in runtime.ledger.tail(10)}
    assert set(rows) == {"one", "two"}
    ok, failed = rows["one"], rows["two"]
    assert (ok["status"], ok["outcome"], ok["target"]) == (200, "ok", "m/x")
    expected_cost = (ok["prompt_tokens"] * 1000 + ok["completion_tokens"] * 2000) / 1e6
    assert abs(ok["cost"] - expected_cost) < 1e-9 and ok["cost"] > 0
    assert (failed["status"], failed["outcome"]) == (503, "error")
    assert [(a["target"], a["outcome"]) for a in failed["attempts"]] == [
        ("m/x", "error"), ("n/y", "error")]
    assert "ann@example.com" not in ok["prompt"] and "[EMAIL_1]" in ok["prompt"]
    runtime.ledger.close()


async def test_store_none_keeps_no_text(tmp_path):
    runtime = runtime_with(tmp_path, ["fine"], store="none")
    await runtime.complete("r", ChatRequest([Message("user", "secret plan")]))
    assert runtime.ledger.flush()
    row = runtime.ledger.tail(1)[0]
    assert row["prompt"] is None and row["completion"] is None
    runtime.ledger.close()


async def test_stats_group_by_route_and_target(tmp_path):
    runtime = runtime_with(tmp_path, ["a", "b", "c"])
    for _ in range(3):
        await runtime.complete("r", ChatRequest([Message("user", "hi")]))
    assert runtime.ledger.flush()
    [group] = runtime.ledger.stats()
    assert (group["route"], group["target"], group["requests"], group["errors"]) == (
        "r", "m/x", 3, 0)
    assert group["completion_tokens"] == 3
    runtime.ledger.close()


def test_close_drains_the_queue(tmp_path):
    from unwalled.ledger import Record

    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger = Ledger(url)
    for i in range(2000):
        ledger.record(Record(id=f"r{i}", ingress="test", route="r", status=200,
                             outcome="ok", latency_ms=1.0))
    ledger.close()
    reopened = Ledger(url)
    assert reopened.count() == 2000
    reopened.close()


def test_insert_columns_match_the_schema():
    from unwalled.ledger import schema
    from unwalled.ledger.store import ATTEMPT_COLUMNS, REQUEST_COLUMNS

    assert REQUEST_COLUMNS == tuple(c.name for c in schema.requests.columns)
    assert ATTEMPT_COLUMNS == tuple(c.name for c in schema.attempts.columns)


def test_flush_waits_for_records_queued_before_it(tmp_path):
    from unwalled.ledger import Record

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", interval=5.0)
    for i in range(10):
        ledger.record(Record(id=f"f{i}", ingress="test", route="r", status=200,
                             outcome="ok", latency_ms=1.0))
    assert ledger.flush(timeout=3)  # woken at once, not after the 5 s interval
    assert ledger.count() == 10
    ledger.close()


def test_a_record_the_writer_cannot_take_costs_only_itself(tmp_path):
    """Text of the wrong type (once an upstream's list passed through as the
    answer) and a scrub that raises: the writer keeps going, the others land."""
    from unwalled.ledger import Record
    from unwalled.shield import redact_text

    def broken(_text: str) -> str:
        raise RuntimeError("redaction failed")

    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}")
    ledger.record(Record(id="list", ingress="test", route="r", status=200, outcome="ok",
                         latency_ms=1.0, completion=["not", "text"], scrub=redact_text))
    ledger.record(Record(id="scrub", ingress="test", route="r", status=200,
                         outcome="ok", latency_ms=1.0, completion="x", scrub=broken))
    ledger.record(Record(id="after", ingress="test", route="r" * 300, status=200,
                         outcome="ok", latency_ms=1.0, completion="fine"))
    assert ledger.flush(timeout=10)
    rows = {row["id"]: row for row in ledger.tail(10)}
    ledger.close()
    assert rows["list"]["completion"] == "['not', 'text']"
    assert "scrub" not in rows  # its text could not be made safe: not stored raw
    assert rows["after"]["completion"] == "fine" and rows["after"]["route"] == "r" * 128


# ---- export ----

def _export_ledger(url: str) -> Ledger:
    """Seven requests: three share one timestamp (a page boundary falls among
    them), one failed over two attempts, one under a contract."""
    from unwalled.ledger import AttemptRecord, Record

    ledger = Ledger(url)
    for i in range(7):
        ledger.record(Record(
            id=f"req-{i}", ingress="openai", route="a" if i % 2 else "b", status=200,
            outcome="ok", latency_ms=10.0 + i, ts=1_000.0 if 2 <= i <= 4 else 990.0 + i,
            target="m/x", prompt_tokens=i, completion_tokens=2 * i,
            contract="intent" if i == 5 else None,
            verdict={"passed": True, "attempts": 1} if i == 5 else None,
            prompt=f"prompt, with \"quotes\"\nand a newline {i}",
            attempts=[AttemptRecord("n/y", "error", 1.5, "boom", "upstream_error", 500),
                      AttemptRecord("m/x", "ok", 8.0)] if i == 6 else
            [AttemptRecord("m/x", "ok", 8.0)]))
    assert ledger.flush()
    return ledger


def test_export_pages_through_every_request_in_time_order(tmp_path):
    ledger = _export_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        # Pages of 2 split the three rows at ts 1000 across pages.
        rows = list(ledger.export(chunk=2))
        assert [r["id"] for r in rows] == ["req-0", "req-1", "req-5", "req-6",
                                           "req-2", "req-3", "req-4"]
        assert rows == list(ledger.export())  # the page size changes nothing
        failed_over = rows[3]
        assert [(a["seq"], a["target"], a["outcome"], a["upstream_status"])
                for a in failed_over["attempts"]] == [(0, "n/y", "error", 500),
                                                      (1, "m/x", "ok", None)]
        assert rows[2]["verdict"] == {"passed": True, "attempts": 1}
        assert [r["id"] for r in ledger.export(route="a", since=991, until=1000)] \
            == ["req-1", "req-5"]
    finally:
        ledger.close()


def test_export_cli_writes_jsonl_and_csv_that_read_back(tmp_path):
    import csv
    import json

    from tests.test_cli import unwalled

    url = f"sqlite:///{tmp_path / 'l.db'}"
    _export_ledger(url).close()
    (tmp_path / "unwalled.yaml").write_text(f'ledger: {{url: "{url}"}}\n')

    jsonl = unwalled("ledger", "export", cwd=tmp_path)
    assert jsonl.returncode == 0, jsonl.stderr
    lines = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert len(lines) == 7 and lines[0]["prompt"] == 'prompt, with "quotes"\nand a newline 0'
    assert lines[3]["attempts"][0]["error"] == "boom"
    dash = unwalled("ledger", "export", "-o", "-", cwd=tmp_path)  # "-": stdout
    assert dash.stdout == jsonl.stdout and not (tmp_path / "-").exists()

    made = unwalled("ledger", "export", "--format", "csv", "-o", "out.csv",
                    "--since", "1970-01-01T00:16:31", "--route", "a", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stderr.strip() == "3 requests written to out.csv"
    with open(tmp_path / "out.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["id"] for row in table] == ["req-1", "req-5", "req-3"]
    assert list(table[0])[:3] == ["id", "ts", "ingress"] and list(table[0])[-1] == "attempts"
    assert json.loads(table[1]["verdict"]) == {"passed": True, "attempts": 1}
    assert table[0]["verdict"] == "" and json.loads(table[0]["attempts"])[0]["target"] == "m/x"
    assert table[0]["prompt"] == 'prompt, with "quotes"\nand a newline 1'


def test_export_cli_names_the_fix_for_bad_options(tmp_path):
    from tests.test_cli import unwalled

    (tmp_path / "unwalled.yaml").write_text(
        f'ledger: {{url: "sqlite:///{tmp_path / "l.db"}"}}\n')
    bad_time = unwalled("ledger", "export", "--since", "yesterday", cwd=tmp_path)
    assert bad_time.returncode == 2
    assert bad_time.stderr.startswith("error: --since: 'yesterday' is not a time.")
    assert "Fix: give an ISO 8601 date" in bad_time.stderr
    bad_format = unwalled("ledger", "export", "--format", "xml", cwd=tmp_path)
    assert bad_format.returncode == 2 and "--format jsonl or --format csv" in \
        bad_format.stderr
    nowhere = unwalled("ledger", "export", "-o", "no/such/dir/x.jsonl", cwd=tmp_path)
    assert nowhere.returncode == 2 and nowhere.stderr.startswith(
        "error: --output: cannot write no/such/dir/x.jsonl")


def test_a_client_never_closed_still_writes_its_records_at_exit(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "unwalled.yaml").write_text(
        "backends: {m: {type: mock}}\nroutes: {r: {targets: [m/echo]}}\n")
    script = ("from unwalled import Client\n"
              "client = Client(config='unwalled.yaml')\n"
              "for _ in range(3):\n"
              "    client.complete('hi', route='r', contract={'name': 'c'})\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, timeout=120,
                          capture_output=True, text=True, env={
                              "PATH": "/usr/bin:/bin",
                              "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert done.returncode == 0, done.stderr
    ledger = Ledger(f"sqlite:///{tmp_path / 'unwalled-ledger.db'}")
    assert ledger.count() == 3
    ledger.close()
