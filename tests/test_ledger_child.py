"""The ledger's child writer (``ledger.writer: process``): batches are redacted
and inserted in a child process; if the child dies, it is started again and no
record is lost."""

from __future__ import annotations

import os
import signal

from unwalled.ledger import Ledger
from unwalled.ledger.store import AttemptRecord, Record
from unwalled.shield.redaction import redact_text


def record(i: int, prompt: str = "hi", scrub=None) -> Record:
    return Record(id=f"child-{i}", ingress="python", route="r", status=200,
                  outcome="ok", latency_ms=1.5, target="mock/echo", prompt=prompt,
                  completion="fine", scrub=scrub,
                  attempts=[AttemptRecord("mock/echo", "ok", 1.0)])


def test_the_child_redacts_and_inserts_every_record(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", writer="process")
    try:
        for i in range(1200):  # more than two batches
            ledger.record(record(i, "mail me at jane.doe@example.com", redact_text))
        assert ledger.flush()
        assert ledger._child._process.pid != os.getpid()
        assert ledger.count() == 1200
        rows = ledger.tail(3)
        assert {r["prompt"] for r in rows} == {"mail me at [EMAIL_1]"}
        assert [a["target"] for a in rows[0]["attempts"]] == ["mock/echo"]
    finally:
        ledger.close()


def test_a_killed_child_is_started_again_and_nothing_is_lost(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", writer="process")
    try:
        ledger.record(record(0))
        assert ledger.flush() and ledger.count() == 1
        first = ledger._child._process.pid
        os.kill(first, signal.SIGKILL)
        ledger._child._process.wait(10)
        for i in range(1, 11):
            ledger.record(record(i))
        assert ledger.flush()
        assert ledger.count() == 11
        assert ledger._child._process.pid != first
    finally:
        ledger.close()


def test_close_drains_through_the_child_and_stops_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger = Ledger(url, writer="process")
    ledger.record(record(0))
    assert ledger.flush()
    process = ledger._child._process
    for i in range(1, 50):
        ledger.record(record(i))
    ledger.close()
    assert process.poll() is not None  # it has exited
    reader = Ledger(url, writer="thread")
    try:
        assert reader.count() == 50
    finally:
        reader.close()
