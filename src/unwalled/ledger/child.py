"""The ledger's child writer: inserts batches in a process of its own.

A busy gateway spends a good share of its time on the ledger: redacting text
and inserting rows. In a thread that work holds the interpreter lock the
request path needs; in a child process it runs on another core. The parent's
writer thread sends each batch down a pipe and waits (without the lock) for the
number of records lost. If the child is gone, it is started again; if that
fails too, the parent inserts the batch itself, so nothing is lost either way.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger("unwalled.ledger")


READY = "ready"
RETRY_START_AFTER = 30.0
"""Seconds to write in the parent after the child failed to start."""


class ChildWriter:
    def __init__(self, url: str) -> None:
        self.url = url
        self._process: Any = None
        self._conn: Connection | None = None
        self._broken_until = 0.0
        # Started by the first batch, in the ledger's writer thread: opening a
        # ledger never waits for an interpreter to start.

    def _start(self) -> bool:
        """Start the child and wait until it holds a database connection.

        A fresh interpreter running this module, not multiprocessing's spawn,
        which would import the caller's main script again in the child. The URL
        (which may hold a password) goes down the socket, never on a command
        line."""
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "unwalled.ledger.child", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
            theirs.close()
            self._conn = Connection(ours.detach())
            self._conn.send(self.url)
            if self._conn.poll(60) and self._conn.recv() == READY:
                return True
        except (EOFError, OSError) as exc:
            log.warning("cannot start the ledger writer process: %s", type(exc).__name__)
        log.warning("the ledger writer process did not start; records are written "
                    "by the gateway process for the next %.0f s", RETRY_START_AFTER)
        self._stop()
        self._broken_until = time.monotonic() + RETRY_START_AFTER
        return False

    def write(self, batch: Any) -> int | None:
        """Records lost, or None when the child could not take the batch (the
        caller then writes it itself)."""
        if self._conn is None:
            if time.monotonic() < self._broken_until or not self._start():
                return None
        for attempt in range(2):
            try:
                assert self._conn is not None
                self._conn.send(batch)
                return self._conn.recv()
            except (EOFError, OSError) as exc:
                log.warning("the ledger writer process is gone (%s)", type(exc).__name__)
                self._stop()
                if attempt or not self._start():
                    return None
        return None

    def close(self) -> None:
        try:
            if self._conn is not None:
                self._conn.send(None)
        except (EOFError, OSError):
            pass
        self._stop()

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
    except (EOFError, KeyboardInterrupt):
        return  # the parent is gone: nothing more will come
    finally:
        inserter.engine.dispose()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    _main(Connection(int(sys.argv[1])))
