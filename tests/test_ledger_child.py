"""The ledger's child writer (``ledger.writer: process``): batches are redacted
and inserted in a child process; if the child dies, it is started again and no
record is lost."""

from __future__ import annotations

import os
import signal

from unwalled.ledger import Ledger
from unwalled.ledger.store import AttemptRecord, Record, batch_of
from unwalled.shield.redaction import redact_text


def record(i: int, prompt: str = "hi", scrub=None) -> Record:
    return Record(id=f"child-{i}", ingress="python", route="r", status=200,
                  outcome="ok", latency_ms=1.5, target="mock/echo", prompt=prompt,
                  completion="fine", scrub=scrub,
                  attempts=[AttemptRecord("mock/echo", "ok", 1.0)])


def test_the_child_redacts_and_inserts_every_record(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", writer="process")
    try:
        assert ledger._child.wait_ready(60)  # the child writes what follows
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
        assert ledger._child.wait_ready(60)
        ledger.record(record(0))
        assert ledger.flush() and ledger.count() == 1
        first = ledger._child._process.pid
        os.kill(first, signal.SIGKILL)
        ledger._child._process.wait(10)
        for i in range(1, 11):
            ledger.record(record(i))
        assert ledger.flush()
        assert ledger.count() == 11
        assert ledger._child.wait_ready(60)
        assert ledger._child._process.pid != first
    finally:
        ledger.close()


def test_close_drains_through_the_child_and_stops_it(tmp_path):
    url = f"sqlite:///{tmp_path / 'l.db'}"
    ledger = Ledger(url, writer="process")
    assert ledger._child.wait_ready(60)
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


SLOW_START = """\
import os, time
gate = os.environ.get("UNWALLED_TEST_CHILD_GATE")
while gate and not os.path.exists(gate):
    time.sleep(0.02)
"""
"""A ``sitecustomize`` that holds every new interpreter until a file exists: a
child writer as slow to start as on a busy machine, for as long as a test wants."""


def test_records_are_written_while_the_child_is_still_starting(tmp_path, monkeypatch):
    """On a busy machine a child takes seconds to start. Until it is ready the
    writer thread inserts the batches itself: records held in memory meanwhile
    would all be lost if the gateway died (a worker killed under load lost
    every answer it had given since it started)."""
    site, gate = tmp_path / "site", tmp_path / "gate"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_START)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("UNWALLED_TEST_CHILD_GATE", str(gate))
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", writer="process")
    try:
        for i in range(10):
            ledger.record(record(i))
        assert ledger.flush()  # the child is still held at the gate
        assert ledger.count() == 10
        child = ledger._child._process
        assert child is None or child.poll() is None
        gate.touch()
        assert ledger._child.wait_ready(60)
        first = ledger._child._process.pid
        for i in range(10, 20):
            ledger.record(record(i))
        assert ledger.flush() and ledger.count() == 20
        assert ledger._child._process.pid == first  # the child took these
    finally:
        gate.touch()
        ledger.close()


def test_a_batch_sent_again_after_the_child_died_is_not_counted_lost(tmp_path):
    """A child killed after committing a batch but before answering leaves the
    writer to send that batch again, with its rows already in. That is neither
    a duplicate row nor a lost record (it was logged as 500 records dropped,
    after seconds of retries)."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'l.db'}", writer="process")
    try:
        records = [record(i) for i in range(5)]
        for one in records:
            ledger.record(one)
        assert ledger.flush() and ledger.count() == 5
        assert ledger._child.wait_ready(60)
        assert ledger._child.write(batch_of(records)) == 0
        assert ledger._inserter.write(batch_of(records)) == 0
        assert ledger.count() == 5
        assert len(ledger.tail(1)[0]["attempts"]) == 1
    finally:
        ledger.close()
