"""Each user's known devices: hashed fingerprints (devices/fingerprint.py) and when last used.

A row is written when a session ends (logout, revocation, the cap, expiry), with that session's
last use, so that the device stays known for KNOWN_FOR_DAYS after it; a live session is its own
proof (auth/login_checks.py, device_is_known). Rows older than that are purged with expired sessions.
"""

from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, Index, String, bindparam, case, delete, select, tuple_
from sqlalchemy.orm import Mapped, mapped_column

from zipline_sessions.devices.fingerprint import KNOWN_FOR_DAYS
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db
from zipline_sessions.storage.upsert import upsert

KNOWN_FOR = timedelta(days=KNOWN_FOR_DAYS)


class KnownDevice(db.Model):
    """One device a user has had a session on: its fingerprint's hash and the last use."""

    __tablename__ = "known_devices"
    __table_args__ = (Index("ix_known_devices_last_used_at", "last_used_at"),)  # the purge

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_used_at: Mapped[datetime]


_KNOWN = KnownDevice.__table__


def known_since() -> datetime:
    """Devices used after this instant are known."""
    return utcnow() - KNOWN_FOR


def remembered(user_id: int, fingerprint: str) -> bool:
    """Inside a write transaction: whether an ended session of the user had this device within
    KNOWN_FOR of now."""
    query = select(_KNOWN.c.user_id).where(_KNOWN.c.user_id == user_id, _KNOWN.c.fingerprint == fingerprint,
                                           _KNOWN.c.last_used_at > known_since())
    return db.session.execute(query).first() is not None


def remember(uses) -> None:
    """Inside a write transaction: record (user_id, fingerprint, last_used_at) of ended sessions;
    a row keeps its latest use. Uses already too old to count, or without a fingerprint (seeded,
    or from before the upgrade), are skipped."""
    since = known_since()
    latest: dict[tuple[int, str], datetime] = {}
    for user_id, fingerprint, used_at in uses:
        if fingerprint and used_at is not None and used_at > since:
            key = (user_id, fingerprint)
            latest[key] = max(used_at, latest.get(key, used_at))
    if not latest:
        return
    statement = upsert(_KNOWN).values(
        user_id=bindparam("u"), fingerprint=bindparam("f"), last_used_at=bindparam("t"))
    statement = statement.on_conflict_do_update(index_elements=[_KNOWN.c.user_id, _KNOWN.c.fingerprint], set_={
        "last_used_at": case((statement.excluded.last_used_at > _KNOWN.c.last_used_at, statement.excluded.last_used_at),
                             else_=_KNOWN.c.last_used_at)})
    # In key order: two transactions that remember the same devices lock their rows in one order.
    db.session.execute(statement, [{"u": u, "f": f, "t": t} for (u, f), t in sorted(latest.items())])


def purge_stale(limit: int | None) -> int:
    """Inside a write transaction: forget up to `limit` (None: all) devices unused for KNOWN_FOR;
    how many. Rows another transaction holds are skipped (PostgreSQL)."""
    stale = _KNOWN.c.last_used_at <= known_since()
    if limit is None:
        return db.session.execute(delete(_KNOWN).where(stale)).rowcount
    oldest = (select(_KNOWN.c.user_id, _KNOWN.c.fingerprint).where(stale)
              .order_by(_KNOWN.c.last_used_at).limit(limit).with_for_update(skip_locked=True))
    key = tuple_(_KNOWN.c.user_id, _KNOWN.c.fingerprint)
    return db.session.execute(delete(_KNOWN).where(key.in_(oldest))).rowcount


def forget_all() -> None:
    """Inside a write transaction: the test-control reset."""
    db.session.execute(delete(_KNOWN))
