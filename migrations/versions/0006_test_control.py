"""test_clock, test_faults, test_requests: the test-control API's clock, faults and journal

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Used only when SESSIONS_TEST_CONTROL is true (test_control.py); made on every database, like
every table, so that a database can serve with test control on or off. test_clock holds one row
(id 1) whose fixed_at is NULL (real time) until a test sets the clock.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    clock = op.create_table(
        "test_clock",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("fixed_at", sa.DateTime(), nullable=True),
    )
    op.bulk_insert(clock, [{"id": 1, "fixed_at": None}])
    op.create_table(
        "test_faults",
        sa.Column("route", sa.String(300), primary_key=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("message", sa.String(255), nullable=True),
        sa.Column("delay_ms", sa.Integer(), nullable=True),
        sa.Column("jitter_ms", sa.Integer(), nullable=True),
        sa.Column("drop_connection", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("remaining", sa.Integer(), nullable=True),
    )
    op.create_table(
        "test_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("path", sa.String(2048), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("fault", sa.String(255), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("test_requests")
    op.drop_table("test_faults")
    op.drop_table("test_clock")
