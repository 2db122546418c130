"""Exports of the ledger: the company's record of every call, out in files that
any tool reads.

- **JSONL**: one request a line, every column, its attempts nested and its
  verdict as JSON: a lossless copy.
- **CSV**: one request a row, every column; attempts and verdict as JSON text
  in their cells, for spreadsheets and warehouses.

Rows are written as the store yields them, a page at a time, so an export of
millions of rows runs in flat memory.
"""

from __future__ import annotations

import csv
import datetime as dt
from typing import Any, Iterable, Literal, TextIO

import orjson

from unwalled.errors import ConfigError
from unwalled.ledger import schema

Format = Literal["jsonl", "csv"]

COLUMNS = [column.name for column in schema.requests.columns] + ["attempts"]
"""The columns of a CSV export, in order: the ``requests`` table's, then attempts."""


def write(rows: Iterable[dict[str, Any]], out: TextIO, fmt: Format) -> int:
    """Write ``rows`` to ``out`` in ``fmt``; return how many were written."""
    return (_write_csv if fmt == "csv" else _write_jsonl)(rows, out)


def _write_jsonl(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    count = 0
    for row in rows:
        out.write(orjson.dumps(row, default=str).decode())
        out.write("\n")
        count += 1
    return count


def _write_csv(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({**row, **{key: _json_cell(row.get(key))
                                   for key in ("attempts", "verdict")}})
        count += 1
    return count


def _json_cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def parse_time(value: str, option: str) -> float:
    """A point in time given on the command line: ISO 8601 (``2026-12-01``,
    ``2026-12-01T09:30``, with or without an offset; UTC when none) or Unix
    seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{value!r} is not a time.", key=option,
                          fix="give an ISO 8601 date or time such as 2026-12-01 or "
                              "2026-12-01T09:30:00+01:00, or Unix seconds.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()
