"""sessions.last_seen_at and sessions.ip (last activity); session_events (the webhook outbox)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

Existing sessions have no activity yet (both NULL) until their next use. session_events holds
each session event until its receiver has taken it (README, "Activity and events").
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs, nullable: never a batch copy of sessions.
    op.add_column("sessions", sa.Column("last_seen_at", sa.DateTime(), nullable=True))
    op.add_column("sessions", sa.Column("ip", sa.String(45), nullable=True))
    op.create_table(
        "session_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),  # the order of events
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("queued_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("dead_at", sa.DateTime(), nullable=True),
        sa.Column("last_error", sa.String(255), nullable=True),
    )
    op.create_index("ix_session_events_due", "session_events", ["dead_at", "next_attempt_at"])
    op.create_index("ix_session_events_user_id_id", "session_events", ["user_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_session_events_user_id_id", table_name="session_events")
    op.drop_index("ix_session_events_due", table_name="session_events")
    op.drop_table("session_events")
    op.drop_column("sessions", "ip")
    op.drop_column("sessions", "last_seen_at")
