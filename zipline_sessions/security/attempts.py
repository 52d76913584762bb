"""The login limit's counters in the database (the default storage): one row per counted key; and
marks, rows that only keep a time (the spacing of one user's token resets)."""

from datetime import datetime, timedelta

from sqlalchemy import Index, String, case, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db
from zipline_sessions.storage.upsert import upsert


class LoginAttempt(db.Model):
    """One login limit's count for one key, in a window that starts at the key's first attempt."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_resets_at", "resets_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of what is counted
    attempts: Mapped[int]
    resets_at: Mapped[datetime]  # the window's end; at or after it the row is stale
_ATTEMPTS = LoginAttempt.__table__


def count_login_attempt(key: str, allowed: int, window: timedelta) -> datetime | None:
    """Inside a write transaction: count one attempt against `key`; None while `allowed`
    attempts are not used up in its window, else when the window ends.

    One statement, atomic on its row: a window that is over restarts at this attempt, and a
    refused attempt leaves the count at allowed + 1. PostgreSQL holds the row's lock until
    commit; SQLite holds the database write lock.
    """
    now = utcnow()
    over = _ATTEMPTS.c.resets_at <= now
    statement = (
        upsert(_ATTEMPTS)
        .values(key=key, attempts=1, resets_at=now + window)
        .on_conflict_do_update(index_elements=[_ATTEMPTS.c.key], set_={
            "attempts": case((over, 1), (_ATTEMPTS.c.attempts > allowed, _ATTEMPTS.c.attempts),
                             else_=_ATTEMPTS.c.attempts + 1),
            "resets_at": case((over, now + window), else_=_ATTEMPTS.c.resets_at),
        })
        .returning(_ATTEMPTS.c.attempts, _ATTEMPTS.c.resets_at)
    )
    attempts, resets_at = db.session.execute(statement).one()
    return None if attempts <= allowed else resets_at


def refused_until(key: str, allowed: int) -> datetime | None:
    """When the window of `key` ends, if its `allowed` attempts are used up already; else None.
    A read: an attempt it refuses needs no write (count_login_attempt would leave the row as is)."""
    query = select(_ATTEMPTS.c.resets_at).where(_ATTEMPTS.c.key == key, _ATTEMPTS.c.attempts > allowed,
                                                _ATTEMPTS.c.resets_at > utcnow())
    resets_at = db.session.execute(query).scalar_one_or_none()
    db.session.commit()  # end the read: SQLite would otherwise hold its snapshot
    return resets_at


def purge_stale_login_attempts(limit: int) -> int:
    """Delete up to `limit` counters whose window is over (oldest first); returns how many.

    Rows another transaction holds are skipped (PostgreSQL), so a purge never waits on a login.
    """
    stale = (select(_ATTEMPTS.c.key).where(_ATTEMPTS.c.resets_at <= utcnow()).order_by(_ATTEMPTS.c.resets_at)
             .limit(limit).with_for_update(skip_locked=True))
    return db.session.execute(delete(_ATTEMPTS).where(_ATTEMPTS.c.key.in_(stale.scalar_subquery()))).rowcount


def read_mark(key: str) -> datetime | None:
    """The time kept under `key` (its resets_at), or None."""
    return db.session.execute(select(_ATTEMPTS.c.resets_at).where(_ATTEMPTS.c.key == key)).scalar_one_or_none()


def set_mark(key: str, until: datetime) -> None:
    """Inside a write transaction: keep `until` under `key` (purged once it has passed)."""
    statement = (upsert(_ATTEMPTS)
                 .values(key=key, attempts=0, resets_at=until)
                 .on_conflict_do_update(index_elements=[_ATTEMPTS.c.key], set_={"attempts": 0, "resets_at": until}))
    db.session.execute(statement)
