"""The ledger's tables. Changes go through a numbered migration in ``migrations/``."""

from __future__ import annotations

from sqlalchemy import (
    Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
)

metadata = MetaData()

requests = Table(
    "requests", metadata,
    Column("id", String(64), primary_key=True),
    Column("ts", Float, nullable=False),
    Column("ingress", String(16), nullable=False),
    Column("route", String(128)),
    Column("target", String(256)),
    Column("status", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("stream", Boolean, nullable=False, default=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("usage_estimated", Boolean, nullable=False, default=False),
    Column("latency_ms", Float, nullable=False),
    Column("cost", Float, nullable=False, default=0.0),
    Column("error", Text),
    Column("error_code", String(64)),
    Column("key_id", String(64)),
    Column("contract", String(128)),
    Column("verdict", Text),
    Column("prompt", Text),
    Column("completion", Text),
    Index("ix_requests_ts", "ts"),
    Index("ix_requests_route_ts", "route", "ts"),
)

attempts = Table(
    "attempts", metadata,
    Column("request_id", String(64), ForeignKey("requests.id"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("target", String(256), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("error", Text),
    Column("error_code", String(64)),
    Column("upstream_status", Integer),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("routes", Text),
    Column("contracts", Text),
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("budget", Float),
    Column("created", Float, nullable=False),
    Column("revoked", Float),
)

# ---- drift watch (migration 0002) ----

drift_snapshots = Table(
    "drift_snapshots", metadata,
    Column("id", String(64), primary_key=True),
    Column("route", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("probe_set", String(256), nullable=False),
    Column("probe_digest", String(64), nullable=False),
    Column("probes", Text, nullable=False),
    Column("targets", Text),
    Column("samples", Integer, nullable=False),
    Index("ix_drift_snapshots_route_ts", "route", "ts"),
)

drift_samples = Table(
    "drift_samples", metadata,
    Column("snapshot_id", String(64), ForeignKey("drift_snapshots.id"),
           primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("probe", String(128), nullable=False),
    Column("text", Text, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("finish_reason", String(32)),
    Column("target", String(256)),
    Column("passed", Boolean),
    Column("violations", Text),
    Column("logprobs", Text),
)

drift_checks = Table(
    "drift_checks", metadata,
    Column("id", String(64), primary_key=True),
    Column("route", String(128), nullable=False),
    Column("ts", Float, nullable=False),
    Column("snapshot_id", String(64)),
    Column("status", String(16), nullable=False),
    Column("p_value", Float),
    Column("moved", Text),
    Column("report", Text),
    Column("error", Text),
    Index("ix_drift_checks_route_ts", "route", "ts"),
)
