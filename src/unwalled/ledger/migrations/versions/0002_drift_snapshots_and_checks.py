"""Drift watch: snapshots of reference samples, and the result of each check.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_snapshots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("probe_set", sa.String(256), nullable=False),
        sa.Column("probe_digest", sa.String(64), nullable=False),
        sa.Column("probes", sa.Text, nullable=False),
        sa.Column("targets", sa.Text),
        sa.Column("samples", sa.Integer, nullable=False),
    )
    op.create_index("ix_drift_snapshots_route_ts", "drift_snapshots", ["route", "ts"])
    op.create_table(
        "drift_samples",
        sa.Column("snapshot_id", sa.String(64), sa.ForeignKey("drift_snapshots.id"),
                  primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("probe", sa.String(128), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("finish_reason", sa.String(32)),
        sa.Column("target", sa.String(256)),
        sa.Column("passed", sa.Boolean),
        sa.Column("violations", sa.Text),
        sa.Column("logprobs", sa.Text),
    )
    op.create_table(
        "drift_checks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("route", sa.String(128), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("snapshot_id", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("p_value", sa.Float),
        sa.Column("moved", sa.Text),
        sa.Column("report", sa.Text),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_drift_checks_route_ts", "drift_checks", ["route", "ts"])


def downgrade() -> None:
    op.drop_index("ix_drift_checks_route_ts", "drift_checks")
    op.drop_table("drift_checks")
    op.drop_table("drift_samples")
    op.drop_index("ix_drift_snapshots_route_ts", "drift_snapshots")
    op.drop_table("drift_snapshots")
