"""login_attempts: the login limit's counters, shared by every worker and kept across restarts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

One row per counted key (a SHA-256 of the limit and what it counts: username and address,
address, or username); its window ends at resets_at, which also orders the purge of stale rows.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("resets_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_login_attempts_resets_at", "login_attempts", ["resets_at"])


def downgrade() -> None:
    op.drop_index("ix_login_attempts_resets_at", table_name="login_attempts")
    op.drop_table("login_attempts")
