"""The requests and attempts tables.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("ingress", sa.String(16), nullable=False),
        sa.Column("route", sa.String(128)),
        sa.Column("target", sa.String(256)),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("usage_estimated", sa.Boolean, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_code", sa.String(64)),
        sa.Column("key_id", sa.String(64)),
        sa.Column("contract", sa.String(128)),
        sa.Column("verdict", sa.Text),
        sa.Column("prompt", sa.Text),
        sa.Column("completion", sa.Text),
    )
    op.create_index("ix_requests_ts", "requests", ["ts"])
    op.create_index("ix_requests_route_ts", "requests", ["route", "ts"])
    op.create_table(
        "attempts",
        sa.Column("request_id", sa.String(64), sa.ForeignKey("requests.id"),
                  primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_code", sa.String(64)),
        sa.Column("upstream_status", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_index("ix_requests_route_ts", "requests")
    op.drop_index("ix_requests_ts", "requests")
    op.drop_table("requests")
