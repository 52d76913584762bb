"""Session events for the file host: session.created, .ended, .revoked, .expired; and user.renamed.

Each event is written to the outbox (SessionEvent, below) in the same transaction as the change
it tells of (`record`), so none is lost: a crash either keeps both or neither. webhooks.py
delivers them. README, "Activity and events".
"""

import json
import logging
import uuid
from datetime import datetime

from flask import current_app
from sqlalchemy import Index, String, Text, delete, func, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

import models
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import db, write_transaction
from zipline_sessions.storage.timestamps import format_timestamp

logger = logging.getLogger("zipline_sessions.events")

CREATED, ENDED, REVOKED, EXPIRED = "session.created", "session.ended", "session.revoked", "session.expired"
RENAMED = "user.renamed"  # the one event about a user rather than a session
# Why a session was revoked: by its user, an admin, the operator's CLI, a password change, the
# per-user session cap.
REASONS = ("user", "admin", "operator", "password", "cap", "login")  # login: the browser logged in again
# Why a session expired: its absolute lifetime (SESSIONS_TTL_SECONDS), or SESSIONS_IDLE_TIMEOUT.
EXPIRY_REASONS = ("ttl", "idle")


class SessionEvent(db.Model):
    """The webhook outbox: one session event, until its receiver has taken it."""

    __tablename__ = "session_events"
    __table_args__ = (
        Index("ix_session_events_due", "dead_at", "next_attempt_at"),  # what is due
        Index("ix_session_events_user_id_id", "user_id", "id"),  # a user's earlier events
    )

    id: Mapped[int] = mapped_column(primary_key=True)  # the order events happened in
    event_id: Mapped[str] = mapped_column(String(36), unique=True)  # the receiver's dedup key
    type: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[int]  # no foreign key: an event outlives its user
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, as delivered
    created_at: Mapped[datetime]
    queued_at: Mapped[datetime]  # created, or requeued by `events --retry`: its age counts from here
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]  # a worker is delivering it until then
    dead_at: Mapped[datetime | None]  # given up after SESSIONS_WEBHOOK_MAX_AGE
    last_error: Mapped[str | None] = mapped_column(String(255))


_Events = SessionEvent.__table__


def enabled() -> bool:
    return bool(current_app.config["WEBHOOK_URL"])


# Recording: inside the caller's write transaction; nothing at all without a webhook.

def record(event_type: str, user_id: int, username: str | None, session_row, reason: str | None = None,
           extra: dict | None = None) -> None:
    """Queue one event about `session_row` (any row with the public session fields; None:
    nothing happened); a username of None is looked up. `extra`: top-level fields after the
    session (session.created's newDevice)."""
    if session_row is not None and enabled():
        if username is None:
            username = models.usernames([user_id]).get(user_id)
        _insert([_event(event_type, user_id, username, session_row, reason, extra)])


def record_many(event_type: str, user_id: int, username: str, session_rows, reason: str | None = None) -> None:
    """Queue one event per row, all of one user (in the rows' order)."""
    if session_rows and enabled():
        _insert([_event(event_type, user_id, username, row, reason) for row in session_rows])


def record_expired(session_rows, reason: str) -> None:
    """Queue session.expired for purged rows (models.ENDED_COLUMNS: with their user_id), for
    `reason` (EXPIRY_REASONS)."""
    session_rows = [row for row in session_rows if row is not None]
    if not session_rows or not enabled():
        return
    names = models.usernames(row.user_id for row in session_rows)
    _insert([_event(EXPIRED, row.user_id, names.get(row.user_id), row, reason) for row in session_rows])


def record_renamed(user_id: int, previous: str, username: str) -> None:
    """Queue user.renamed: the user under their new name, and the name before."""
    if enabled():
        _insert([_event(RENAMED, user_id, username, None, None, {"previousUsername": previous})])


def _event(event_type: str, user_id: int, username: str | None, row, reason: str | None,
           extra: dict | None = None) -> dict:
    """One outbox row; `row` None: an event about the user alone (no "session"); `extra`:
    top-level fields after "user" and "session"."""
    now = clock.utcnow()
    event_id = str(uuid.uuid4())
    payload = {"id": event_id, "type": event_type, "time": format_timestamp(now),
               "user": {"id": user_id, "username": username}}
    if row is not None:
        payload["session"] = session_fields(row)
    payload.update(extra or {})
    if reason is not None:
        payload["reason"] = reason
    return {"event_id": event_id, "type": event_type, "user_id": user_id,
            "payload": json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
            "created_at": now, "queued_at": now, "attempts": 0, "next_attempt_at": now}


def session_fields(row) -> dict:
    """The session's public fields (never its token or hash), with its last activity."""
    return {"id": row.id, "createdAt": _wire(row.created_at), "ua": row.ua, "client": row.client,
            "device": row.device, "lastSeenAt": _wire(row.last_seen_at), "ip": row.ip,
            "location": row.location}


def _wire(value):
    return format_timestamp(value) if value is not None and not isinstance(value, str) else value


def _insert(rows: list[dict]) -> None:
    db.session.execute(insert(_Events), rows)


# Delivery.





# No proxy from the environment: the receiver is the file host next to the service.


















# What the operator sees and does (health, CLI, test control).

def counts() -> dict:
    """{"pending": events still owed, "dead": events given up on}."""
    dead = func.count(_Events.c.dead_at)
    pending, dead = db.session.execute(select(func.count() - dead, dead)).one()
    return {"pending": pending, "dead": dead}


def dead_events() -> list:
    return db.session.execute(
        select(_Events.c.event_id, _Events.c.type, _Events.c.user_id, _Events.c.created_at, _Events.c.attempts,
               _Events.c.dead_at, _Events.c.last_error)
        .where(_Events.c.dead_at.is_not(None)).order_by(_Events.c.id)).all()


def retry_dead() -> int:
    """Requeue every dead event for delivery now (its age starts again); how many."""
    now = clock.utcnow()
    with write_transaction():
        return db.session.execute(
            update(_Events).where(_Events.c.dead_at.is_not(None))
            .values(dead_at=None, queued_at=now, next_attempt_at=now, attempts=0)).rowcount


def clear() -> None:
    """Inside a write transaction: forget every event (the test-control reset)."""
    db.session.execute(delete(_Events))
