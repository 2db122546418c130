"""Join the two branches that both grew from 0001: drift tables and API keys.

Revision ID: 0004
Revises: 0002, 0003_keys
"""

revision = "0004"
down_revision = ("0002", "0003_keys")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: both parents' tables are already there."""


def downgrade() -> None:
    """Nothing to undo."""
