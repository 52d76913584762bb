"""sessions (last_seen_at, created_at) index: the idle timeout's purge

Revision ID: 0008_idle_timeout
Revises: 0007
Create Date: 2026-12-02

SESSIONS_IDLE_TIMEOUT purges sessions last used (or, never used, created) before a time; this
index finds them without reading the whole table (activity/idle.py).
"""

from alembic import op

revision = "0008_idle_timeout"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sessions_last_seen_at_created_at", "sessions", ["last_seen_at", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_last_seen_at_created_at", table_name="sessions")
