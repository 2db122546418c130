"""The ledger: a durable record of every call, written off the request path.

``Ledger.record`` puts a ``Record`` on a queue and returns at once; a writer
thread commits records in batches (every 50 ms or 500 records), itself or
through a child process (``ledger/child.py``). ``close`` drains the queue, so a
clean shutdown loses nothing. The schema is created and
upgraded by the numbered Alembic migrations in ``migrations/``.
"""

from __future__ import annotations

import atexit

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

import orjson
from sqlalchemy import Engine, and_, create_engine, event, func, or_, select, text

from unwalled.errors import ConfigError
from unwalled.ledger import schema

log = logging.getLogger("unwalled.ledger")

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x756E77616C6C6564  # "unwalled": one advisory lock for migrations
RETRY_DELAYS = (0.0, 0.1, 0.5, 2.0)
"""Seconds before each try of a batch: a database restart should lose nothing."""


@dataclass(slots=True)
class AttemptRecord:
    target: str
    outcome: str
    latency_ms: float = 0.0
    error: str | None = None
    error_code: str | None = None
    upstream_status: int | None = None


@dataclass(slots=True)
class Record:
    """One client request, whatever became of it."""

    id: str
    ingress: str
    route: str | None
    status: int
    outcome: str  # "ok", "error", "rejected", "cancelled" (the client left)
    latency_ms: float
    ts: float = field(default_factory=time.time)
    target: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    cost: float = 0.0
    error: str | None = None
    error_code: str | None = None
    key_id: str | None = None
    contract: str | None = None
    verdict: Any = None
    prompt: str | None = None
    completion: str | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    scrub: Callable[[str], str] | None = None
    """Applied to prompt and completion by the writer, off the request path
    (redaction, with ``ledger.store: redacted``)."""

    def values(self) -> tuple[Any, ...]:
        """The ``requests`` row, in ``REQUEST_COLUMNS`` order, before ``scrub``."""
        verdict = self.verdict
        if verdict is not None and not isinstance(verdict, str):
            verdict = orjson.dumps(verdict, default=str).decode()
        return (self.id, self.ts, self.ingress, _cut(self.route, 128),
                _cut(self.target, 256), self.status, self.outcome, self.stream,
                self.prompt_tokens, self.completion_tokens, self.usage_estimated,
                self.latency_ms, self.cost, self.error, _cut(self.error_code, 64),
                self.key_id, _cut(self.contract, 128), verdict, self.prompt,
                self.completion)


def _cut(value: str | None, size: int) -> str | None:
    """A name cut to its column's size: a client may name a route of any length,
    and PostgreSQL refuses (drops) a row with a longer value."""
    return value[:size] if value is not None and len(value) > size else value


Batch = tuple[list[tuple[Any, ...]], list[Any], list[tuple[Any, ...]]]
"""What a writer inserts: request rows, each row's scrub (or None), attempt rows.
Plain tuples and module-level functions, so a batch crosses to a child process."""


def batch_of(records: list[Record]) -> Batch:
    rows = [r.values() for r in records]
    scrubs = [r.scrub for r in records]
    tries = [(r.id, i, _cut(a.target, 256), a.outcome, a.latency_ms, a.error,
              _cut(a.error_code, 64),
              a.upstream_status) for r in records for i, a in enumerate(r.attempts)]
    return rows, scrubs, tries


REQUEST_COLUMNS = ("id", "ts", "ingress", "route", "target", "status", "outcome",
                   "stream", "prompt_tokens", "completion_tokens", "usage_estimated",
                   "latency_ms", "cost", "error", "error_code", "key_id", "contract",
                   "verdict", "prompt", "completion")
ATTEMPT_COLUMNS = ("request_id", "seq", "target", "outcome", "latency_ms", "error",
                   "error_code", "upstream_status")


def _insert_sql(table: str, columns: tuple[str, ...], paramstyle: str) -> str:
    """A plain INSERT for the driver's executemany: the hot path skips SQL building.
    Rows already there are skipped: a batch is sent again when its writer died
    after committing it but before saying so."""
    marks = {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(paramstyle)
    if marks is None:
        raise ConfigError(f"the ledger's database driver uses parameter style "
                          f"{paramstyle!r}, which is not supported.", key="ledger.url",
                          fix="use SQLite or PostgreSQL (postgresql+psycopg://...).")
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join([marks] * len(columns))}) ON CONFLICT DO NOTHING")


def engine_for(url: str) -> Engine:
    """An engine for the ledger URL, with SQLite set up for concurrent readers."""
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the driver for ledger URL {safe_url(url)!r} is not "
                          f"installed ({exc}).", key="ledger.url",
                          fix="the ledger runs on SQLite or PostgreSQL: for "
                              "PostgreSQL, pip install 'unwalled[scale]' and use "
                              "postgresql+psycopg://...") from exc
    except Exception as exc:
        raise ConfigError(f"cannot use ledger URL {safe_url(url)!r}: {exc}",
                          key="ledger.url",
                          fix="use e.g. 'sqlite:///unwalled-ledger.db' or "
                              "'postgresql+psycopg://user@host/db'.") from exc
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cursor = conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.close()
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting at once must not run one migration twice.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": MIGRATION_LOCK})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


class Inserter:
    """Inserts batches into one database: the writer thread's, or the child
    process's when ``ledger.writer`` is ``process``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        style = engine.dialect.paramstyle
        self._requests = _insert_sql("requests", REQUEST_COLUMNS, style)
        self._attempts = _insert_sql("attempts", ATTEMPT_COLUMNS, style)
        # PostgreSQL refuses NUL characters in text, and a client can send them.
        self._without_nul = engine.dialect.name == "postgresql"

    def write(self, batch: Batch) -> int:
        """Insert a batch; the number of records lost (after retries, and after
        trying the records of a failing batch one by one)."""
        rows, scrubs, tries = batch
        rows = [_scrubbed(row, scrub) for row, scrub in zip(rows, scrubs)]
        if self._insert(rows, tries, RETRY_DELAYS):
            return 0
        if len(rows) == 1:
            return 1
        # One bad record must not take its whole batch down with it.
        return sum(not self._insert([row], [t for t in tries if t[0] == row[0]], (0.0,))
                   for row in rows)

    def _insert(self, rows: list[tuple[Any, ...]], tries: list[tuple[Any, ...]],
                delays: tuple[float, ...]) -> bool:
        """Records and their attempts in one transaction; True if it held."""
        if self._without_nul:
            rows, tries = _without_nul(rows), _without_nul(tries)
        for delay in delays:
            time.sleep(delay)
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(self._requests, rows)
                    if tries:
                        conn.exec_driver_sql(self._attempts, tries)
                return True
            except Exception as exc:  # keep trying: losing records is worse
                log.warning("ledger write of %d records failed: %s", len(rows),
                            type(exc).__name__)
        return False


def _scrubbed(row: tuple[Any, ...], scrub: Callable[[str], str] | None,
              ) -> tuple[Any, ...]:
    """The row with its prompt and completion (the last two columns) scrubbed."""
    if scrub is None:
        return row
    return row[:-2] + (_scrub_one(row[-2], scrub), _scrub_one(row[-1], scrub))


def _scrub_one(value: Any, scrub: Callable[[str], str]) -> str | None:
    """Scrubbed text; text of a type it should not have is made a string first,
    so that one odd value cannot stop the writer."""
    if not value:
        return None if value is None else str(value)
    return scrub(value if isinstance(value, str) else str(value))


class Ledger:
    def __init__(self, url: str, *, batch_size: int = 500, interval: float = 0.05,
                 run_migrations: bool = True,
                 writer: Literal["thread", "process"] = "thread") -> None:
        """``writer``: where batches are inserted. ``thread`` (the default) in a
        thread of this process; ``process`` in a child process, which keeps the
        database work and redaction off this process's interpreter lock (what
        ``unwalled serve`` uses)."""
        self.url = url
        self.engine = engine_for(url)
        if run_migrations:
            try:
                migrate(self.engine)
            except Exception as exc:
                raise ConfigError(f"cannot open the ledger at {safe_url(url)}: {exc}",
                                  key="ledger.url",
                                  fix="check that the database is reachable and "
                                      "writable.") from exc
        self._inserter = Inserter(self.engine)
        self._child = None
        if writer == "process":
            from unwalled.ledger.child import ChildWriter  # its module runs the child

            self._child = ChildWriter(url)
        self.batch_size = batch_size
        self.interval = interval
        # A deque and a timed wake-up instead of a queue: the request path only
        # appends (no lock, no thread wake-up per record); the writer drains it.
        self._buffer: deque[Record] = deque()
        self._queued = itertools.count(1)
        self._last_queued = 0
        self._written = 0
        self._failed = 0
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="ledger-writer",
                                        daemon=True)
        # A ledger its owner never closed (a script that forgets client.close())
        # still writes what it was given before the interpreter goes.
        atexit.register(self.close)
        self._thread.start()

    # ---- writing ----

    def record(self, record: Record) -> None:
        """Queue a record; never blocks the caller on the database."""
        self._buffer.append(record)
        self._last_queued = next(self._queued)
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            closing = self._closing
            while self._buffer:
                batch = [self._buffer.popleft()
                         for _ in range(min(self.batch_size, len(self._buffer)))]
                self._write(batch)
            if closing:
                return

    def _write(self, records: list[Record]) -> None:
        try:
            lost = self._insert_batch(records)
        except Exception as exc:  # the writer must outlive any one bad batch
            log.error("ledger could not write a batch of %d records (%s); trying "
                      "them one by one", len(records), type(exc).__name__)
            lost = sum(self._insert_alone(record) for record in records)
        if lost:
            self._failed += lost
            log.error("ledger dropped %d records after retries", lost)
        with self._done:
            self._written += len(records)
            self._done.notify_all()

    def _insert_batch(self, records: list[Record]) -> int:
        batch = batch_of(records)
        lost = self._child.write(batch) if self._child is not None else None
        if lost is None:  # in this thread, or the child could not take it
            lost = self._inserter.write(batch)
        return lost

    def _insert_alone(self, record: Record) -> int:
        try:
            return self._insert_batch([record])
        except Exception as exc:
            log.error("ledger dropped record %s: %s", record.id, type(exc).__name__)
            return 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record queued so far is written. True if it got there."""
        target = self._last_queued
        self._wake.set()
        with self._done:
            return self._done.wait_for(lambda: self._written >= target, timeout)

    def close(self) -> None:
        """Write everything queued, then stop the writer."""
        atexit.unregister(self.close)
        if self._thread.is_alive():
            self._closing = True
            self._wake.set()
            self._thread.join(timeout=60)
        if self._child is not None:
            self._child.close()
        self.engine.dispose()

    # ---- reading ----

    def tail(self, limit: int = 20, route: str | None = None) -> list[dict[str, Any]]:
        query = select(schema.requests).order_by(schema.requests.c.ts.desc()).limit(limit)
        if route:
            query = query.where(schema.requests.c.route == route)
        with self.engine.connect() as conn:
            rows = [_plain(r) for r in conn.execute(query)]
            ids = [r["id"] for r in rows]
            tries: dict[str, list[dict[str, Any]]] = {}
            if ids:
                for a in conn.execute(select(schema.attempts)
                                      .where(schema.attempts.c.request_id.in_(ids))
                                      .order_by(schema.attempts.c.seq)):
                    tries.setdefault(a.request_id, []).append(_plain(a))
        for row in rows:
            row["attempts"] = tries.get(row["id"], [])
        return rows

    def export(self, *, since: float | None = None, until: float | None = None,
               route: str | None = None, chunk: int = 1000
               ) -> Iterator[dict[str, Any]]:
        """Every request in time order (oldest first), each with its attempts and
        its verdict parsed, read ``chunk`` rows at a time: memory stays flat
        however large the ledger. Keyset pages on (ts, id), so rows with the
        same timestamp are neither skipped nor repeated."""
        r = schema.requests
        query = select(r).order_by(r.c.ts, r.c.id).limit(chunk)
        if since is not None:
            query = query.where(r.c.ts >= since)
        if until is not None:
            query = query.where(r.c.ts < until)
        if route:
            query = query.where(r.c.route == route)
        page = query
        while True:
            rows = self._page(page)
            yield from rows
            if len(rows) < chunk:
                return
            last_ts, last_id = rows[-1]["ts"], rows[-1]["id"]
            page = query.where(or_(r.c.ts > last_ts,
                                   and_(r.c.ts == last_ts, r.c.id > last_id)))

    def _page(self, query: Any) -> list[dict[str, Any]]:
        """One page of requests, with their attempts in order."""
        a = schema.attempts
        with self.engine.connect() as conn:
            rows = [_plain(row) for row in conn.execute(query)]
            tries: dict[str, list[dict[str, Any]]] = {}
            if rows:
                ids = [row["id"] for row in rows]
                for attempt in conn.execute(select(a).where(a.c.request_id.in_(ids))
                                            .order_by(a.c.request_id, a.c.seq)):
                    tries.setdefault(attempt.request_id, []).append(
                        {k: v for k, v in _plain(attempt).items() if k != "request_id"})
        for row in rows:
            row["verdict"] = _parsed(row["verdict"])
            row["attempts"] = tries.get(row["id"], [])
        return rows

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(schema.requests)).scalar_one()

    def stats(self, since: float | None = None) -> list[dict[str, Any]]:
        """Per route and target: calls, errors, tokens, cost, latency percentiles."""
        r = schema.requests
        query = select(r.c.route, r.c.target, r.c.outcome, r.c.latency_ms,
                       r.c.prompt_tokens, r.c.completion_tokens, r.c.cost)
        if since is not None:
            query = query.where(r.c.ts >= since)
        groups: dict[tuple[str, str], list[Any]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                groups.setdefault((row.route or "-", row.target or "-"), []).append(row)
        return [_summary(route, target, rows)
                for (route, target), rows in sorted(groups.items())]

    def execute(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(text(sql), params)]


def _without_nul(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(v.replace("\x00", "\ufffd") if isinstance(v, str) else v
                  for v in row) for row in rows]


def _parsed(verdict: str | None) -> Any:
    """A stored verdict as the JSON it was written as (text that is not JSON as is)."""
    if verdict is None:
        return None
    try:
        return orjson.loads(verdict)
    except orjson.JSONDecodeError:
        return verdict


def _plain(row: Any) -> dict[str, Any]:
    """A result row as a dict with plain ``str`` keys (JSON encoders want them)."""
    return {str(key): value for key, value in row._mapping.items()}


def _summary(route: str, target: str, rows: Iterable[Any]) -> dict[str, Any]:
    rows = list(rows)
    latencies = sorted(r.latency_ms for r in rows)
    return {
        "route": route, "target": target, "requests": len(rows),
        "errors": sum(1 for r in rows if r.outcome != "ok"),
        "prompt_tokens": sum(r.prompt_tokens for r in rows),
        "completion_tokens": sum(r.completion_tokens for r in rows),
        "cost": sum(r.cost for r in rows),
        "latency_p50_ms": _percentile(latencies, 0.50),
        "latency_p95_ms": _percentile(latencies, 0.95),
    }


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"
