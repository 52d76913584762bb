"""service_secrets: the key that signs the sign-in pages' CSRF tokens, when none is configured

Revision ID: 0008_pages_secret
Revises: 0008_known_devices
Create Date: 2026-12-02

One row per named secret ("pages"), made by the first worker that needs it and read by every
other worker and after every restart (pages/secret.py). SESSIONS_SECRET_KEY, when set, is used
instead and nothing is stored.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_pages_secret"
down_revision = "0008_known_devices"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(128), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_secrets")
