"""What a login checks in the database: the user's live sessions against the cap, and whether its device is known."""

from sqlalchemy import delete, func, select

from models import ENDED_COLUMNS, LAST_USED_AT, Session, ended_rows, live_now
from zipline_sessions.devices import known
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db


def device_is_known(user_id: int, fingerprint: str, opened: str) -> bool:
    """Inside a write transaction: whether the user had a session other than `opened` on this
    device (fingerprint) within devices.known.KNOWN_FOR: one still in the table (live, or expired
    and not yet purged) used since then, or an ended one the known devices remember."""
    query = select(Session.c.id).where(Session.c.user_id == user_id, Session.c.fingerprint == fingerprint,
                                       Session.c.id != opened, LAST_USED_AT > known.known_since()).limit(1)
    return db.session.execute(query).first() is not None or known.remembered(user_id, fingerprint)


def end_oldest_sessions(user_id: int, keep: str, limit: int) -> list:
    """Inside a write transaction: delete the user's oldest live sessions so that `limit` remain,
    `keep` (the one just opened) always among them; the ended rows, oldest first."""
    beyond = (
        select(Session.c.id)
        .where(Session.c.user_id == user_id, live_now(), Session.c.id != keep)
        .order_by(Session.c.created_at.desc(), Session.c.id.desc())
        .offset(limit - 1)
    )
    statement = delete(Session).where(Session.c.id.in_(beyond.scalar_subquery())).returning(*ENDED_COLUMNS)
    return sorted(ended_rows(statement), key=lambda row: (row.created_at, row.id))


def count_live_sessions(user_id: int) -> int:
    """Inside a write transaction: how many live sessions the user has."""
    query = select(func.count()).where(Session.c.user_id == user_id, Session.c.expires_at > utcnow())
    return db.session.execute(query).scalar_one()
