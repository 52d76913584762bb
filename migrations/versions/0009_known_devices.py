"""sessions.location and sessions.fingerprint; known_devices (each user's devices, hashed)

Revision ID: 0008_known_devices
Revises: 0008_idle_timeout
Create Date: 2026-12-02

A session's fingerprint is the SHA-256 of its user, client family, device kind and network
(devices/fingerprint.py). Existing sessions get theirs from the address of their last use, when
one was recorded (SESSIONS_IP_MODE full or truncate: the same /24 or /48), else from their client
and kind alone (as SESSIONS_IP_MODE=off makes them), so that the first login after the upgrade
from a device a user already has is not announced as new. known_devices remembers the devices of
ended sessions for 90 days after their last use (README, "New devices").
"""

import hashlib
import ipaddress
import json

import sqlalchemy as sa
from alembic import op

revision = "0008_known_devices"
down_revision = "0008_idle_timeout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs, nullable: never a batch copy of sessions.
    op.add_column("sessions", sa.Column("location", sa.JSON(none_as_null=True), nullable=True))
    op.add_column("sessions", sa.Column("fingerprint", sa.String(64), nullable=True))
    op.create_table(
        "known_devices",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("last_used_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_known_devices_last_used_at", "known_devices", ["last_used_at"])
    _backfill_fingerprints()


def _backfill_fingerprints() -> None:
    sessions = sa.table("sessions", sa.column("id", sa.String), sa.column("user_id", sa.Integer),
                        sa.column("client", sa.String), sa.column("device", sa.String), sa.column("ip", sa.String),
                        sa.column("fingerprint", sa.String))
    connection = op.get_bind()
    page = (sa.select(sessions.c.id, sessions.c.user_id, sessions.c.client, sessions.c.device, sessions.c.ip)
            .where(sessions.c.id > sa.bindparam("after")).order_by(sessions.c.id).limit(10_000))
    update = sa.update(sessions).where(sessions.c.id == sa.bindparam("sid")).values(fingerprint=sa.bindparam("fp"))
    after = ""
    while rows := connection.execute(page, {"after": after}).all():  # 10,000 at a time, by id
        connection.execute(update, [{"sid": row.id, "fp": _fingerprint(row.user_id, row.client, row.device,
                                                                        _network(row.ip))} for row in rows])
        after = rows[-1].id


# A frozen copy of devices/fingerprint.py at this revision (tests/storage/test_migrations.py
# holds the two equal): a migration must not change when the code does.
def _network(address):
    if not address:
        return ""
    try:
        parsed = ipaddress.ip_address(address.strip("[]").partition("%")[0])
    except ValueError:
        return ""
    if parsed.version == 6 and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return str(ipaddress.ip_network((parsed, {4: 24, 6: 48}[parsed.version]), strict=False))


def _fingerprint(user_id, client, device, network):
    text = json.dumps([user_id, client, device, network], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def downgrade() -> None:
    op.drop_index("ix_known_devices_last_used_at", table_name="known_devices")
    op.drop_table("known_devices")
    op.drop_column("sessions", "fingerprint")
    op.drop_column("sessions", "location")
