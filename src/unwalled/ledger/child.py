"""The ledger's child writer: inserts batches in a process of its own.

A busy gateway spends a good share of its time on the ledger: redacting text
and inserting rows. In a thread that work holds the interpreter lock the
request path needs; in a child process it runs on another core. The parent's
writer thread sends each batch down a pipe and waits (without the lock) for the
number of records lost. While the child is starting (seconds, on a busy
machine), or starting again after it died, the parent inserts batches itself:
no record waits in memory for a child, and nothing is lost either way.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("unwalled.ledger")


READY = "ready"
RETRY_START_AFTER = 30.0
"""Seconds to write in the parent after the child failed to start."""
START_TIMEOUT = 60.0
"""Seconds a child may take to start (the parent writes meanwhile)."""


class ChildWriter:
    def __init__(self, url: str) -> None:
        self.url = url
        self._process: Any = None
        self._conn: Connection | None = None
        self._starting: threading.Thread | None = None
        self._broken_until = 0.0
        # Started by the first batch, in a thread of its own: neither opening a
        # ledger nor writing a batch ever waits for an interpreter to start.

    def write(self, batch: Any) -> int | None:
        """Records lost, or None when the child cannot take the batch (it is
        still starting, or gone): the caller then writes it itself, so a record
        never waits in memory for a child."""
        if self._conn is None:
            self._start_soon()
            return None
        try:
            self._conn.send(batch)
            return self._conn.recv()
        except (EOFError, OSError) as exc:
            # The child may have committed the batch before it died: the
            # caller's second insert of it skips the rows already there.
            log.warning("the ledger writer process is gone (%s); starting another",
                        type(exc).__name__)
            self._stop()
            self._start_soon()
            return None

    def wait_ready(self, timeout: float) -> bool:
        """True once the child takes batches (it is started if need be)."""
        if self._conn is None:
            self._start_soon()
            if self._starting is not None:
                self._starting.join(timeout)
        return self._conn is not None

    def close(self) -> None:
        if self._starting is not None:
            self._starting.join(START_TIMEOUT + 10)
        try:
            if self._conn is not None:
                self._conn.send(None)
        except (EOFError, OSError):
            pass
        self._stop()

    def _start_soon(self) -> None:
        """Start the child in the background, unless it is starting already or
        failed to start a short while ago."""
        if self._starting is not None and self._starting.is_alive():
            return
        if time.monotonic() < self._broken_until:
            return
        self._starting = threading.Thread(target=self._start, daemon=True,
                                          name="ledger-child-start")
        self._starting.start()

    def _start(self) -> None:
        """Start the child and wait until it holds a database connection.

        A fresh interpreter running this module, not multiprocessing's spawn,
        which would import the caller's main script again in the child. The URL
        (which may hold a password) goes down the socket, never on a command
        line."""
        ours, theirs = socket.socketpair()
        conn = None
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "unwalled.ledger.child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
            conn = Connection(ours.detach())
            conn.send(self.url)
            if conn.poll(START_TIMEOUT) and conn.recv() == READY:
                self._conn = conn  # from now on, the writer sends it batches
                return
        except (EOFError, OSError) as exc:
            log.warning("cannot start the ledger writer process: %s", type(exc).__name__)
        finally:
            theirs.close()
        if conn is not None:
            conn.close()
        ours.close()
        log.warning("the ledger writer process did not start; records are written "
                    "by the gateway process for the next %.0f s", RETRY_START_AFTER)
        self._stop()
        self._broken_until = time.monotonic() + RETRY_START_AFTER

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
            self._process = None


def _main(conn: Connection) -> None:
    """The child: insert each batch that arrives, answer with the records lost."""
    from unwalled.ledger.store import Inserter, engine_for

    inserter = Inserter(engine_for(conn.recv()))
    try:
        conn.send(READY)
        while True:
            batch = conn.recv()
            if batch is None:
                return
            conn.send(inserter.write(batch))
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent is gone: nothing more will come
    finally:
        inserter.engine.dispose()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _main(Connection(int(sys.argv[1])))
