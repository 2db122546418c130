"""The api_keys table: keys stored as hashes, with their scopes and limits.

Revision ID: 0003_keys
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_keys"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("routes", sa.Text),
        sa.Column("contracts", sa.Text),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("budget", sa.Float),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("revoked", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
