"""Snapshots and check results, kept in the ledger database.

Snapshot texts are stored whole whatever ``ledger.store`` says: the tests
compare them character by character with fresh answers. Probe prompts are
written by the operator, not by users, so their answers hold no user data.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import insert, select

from unwalled.drift.probes import ProbeSet
from unwalled.drift.sampling import Sample
from unwalled.errors import DriftError
from unwalled.ledger import Ledger
from unwalled.ledger import schema


@dataclass(slots=True)
class Snapshot:
    """The reference behaviour of a route: its probes and their samples."""

    route: str
    probes: ProbeSet
    samples: list[Sample]
    id: str = field(default_factory=lambda: f"snap-{uuid.uuid4().hex[:16]}")
    ts: float = field(default_factory=time.time)

    @property
    def targets(self) -> list[str]:
        return sorted({s.target for s in self.samples if s.target})


@dataclass(slots=True)
class CheckRecord:
    """One check as the ledger keeps it (``status``: ok, drift or error)."""

    route: str
    status: str
    snapshot_id: str | None = None
    p_value: float | None = None
    moved: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    error: str | None = None
    id: str = field(default_factory=lambda: f"chk-{uuid.uuid4().hex[:16]}")
    ts: float = field(default_factory=time.time)


class DriftStore:
    """Reads and writes drift tables through the ledger's engine."""

    def __init__(self, ledger: Ledger) -> None:
        self.engine = ledger.engine

    # ---- snapshots ----

    def save_snapshot(self, snapshot: Snapshot) -> None:
        row = {"id": snapshot.id, "route": snapshot.route, "ts": snapshot.ts,
               "probe_set": snapshot.probes.name, "probe_digest": snapshot.probes.digest,
               "probes": snapshot.probes.to_json(),
               "targets": orjson.dumps(snapshot.targets).decode(),
               "samples": len(snapshot.samples)}
        samples = [_sample_row(snapshot.id, seq, s)
                   for seq, s in enumerate(snapshot.samples)]
        with self.engine.begin() as conn:
            conn.execute(insert(schema.drift_snapshots), [row])
            conn.execute(insert(schema.drift_samples), samples)

    def latest_snapshot(self, route: str) -> Snapshot:
        table = schema.drift_snapshots
        query = (select(table.c.id).where(table.c.route == route)
                 .order_by(table.c.ts.desc()).limit(1))
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        if found is None:
            raise DriftError(
                f"route {route!r} has no drift snapshot in this ledger. Take one "
                f"first: 'unwalled drift snapshot {route} --probes FILE'.")
        return self.snapshot(found)

    def snapshot(self, snapshot_id: str) -> Snapshot:
        snapshots, samples = schema.drift_snapshots, schema.drift_samples
        with self.engine.connect() as conn:
            head = conn.execute(select(snapshots)
                                .where(snapshots.c.id == snapshot_id)).first()
            if head is None:
                raise DriftError(f"no drift snapshot with id {snapshot_id!r}. "
                                 "'unwalled drift list' shows the snapshots.")
            rows = conn.execute(select(samples)
                                .where(samples.c.snapshot_id == snapshot_id)
                                .order_by(samples.c.seq)).all()
        return Snapshot(route=head.route, id=head.id, ts=head.ts,
                        probes=ProbeSet.from_json(head.probes, head.probe_set),
                        samples=[_sample(row) for row in rows])

    def snapshots(self, route: str | None = None) -> list[dict[str, Any]]:
        table = schema.drift_snapshots
        query = select(table.c.id, table.c.route, table.c.ts, table.c.probe_set,
                       table.c.probe_digest, table.c.samples,
                       table.c.targets).order_by(table.c.ts.desc())
        if route:
            query = query.where(table.c.route == route)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    # ---- checks ----

    def save_check(self, check: CheckRecord) -> None:
        row = {"id": check.id, "route": check.route, "ts": check.ts,
               "snapshot_id": check.snapshot_id, "status": check.status,
               "p_value": check.p_value, "moved": orjson.dumps(check.moved).decode(),
               "report": orjson.dumps(check.report).decode() if check.report else None,
               "error": check.error}
        with self.engine.begin() as conn:
            conn.execute(insert(schema.drift_checks), [row])

    def checks(self, route: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        table = schema.drift_checks
        query = (select(table.c.id, table.c.route, table.c.ts, table.c.snapshot_id,
                        table.c.status, table.c.p_value, table.c.moved, table.c.error)
                 .order_by(table.c.ts.desc()).limit(limit))
        if route:
            query = query.where(table.c.route == route)
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(query)]
        for row in rows:
            row["moved"] = orjson.loads(row["moved"]) if row["moved"] else []
        return rows


def _sample_row(snapshot_id: str, seq: int, sample: Sample) -> dict[str, Any]:
    return {"snapshot_id": snapshot_id, "seq": seq, "probe": sample.probe,
            "text": sample.text, "prompt_tokens": sample.prompt_tokens,
            "completion_tokens": sample.completion_tokens,
            "finish_reason": sample.finish_reason, "target": sample.target,
            "passed": sample.passed,
            "violations": orjson.dumps(sample.violations).decode()
            if sample.violations else None,
            "logprobs": orjson.dumps(sample.logprobs).decode()
            if sample.logprobs is not None else None}


def _sample(row: Any) -> Sample:
    return Sample(probe=row.probe, text=row.text, prompt_tokens=row.prompt_tokens,
                  completion_tokens=row.completion_tokens,
                  finish_reason=row.finish_reason or "stop", target=row.target,
                  passed=row.passed,
                  violations=orjson.loads(row.violations) if row.violations else [],
                  logprobs=orjson.loads(row.logprobs) if row.logprobs else None)
