"""users.is_admin: admins list and revoke any user's sessions

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

Existing users are not admins; `flask --app app set-admin NAME` makes one.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (SQLite allows NOT NULL with a default): never a batch copy of users,
    # whose DROP would cascade to every session.
    op.add_column("users", sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("users", "is_admin")
