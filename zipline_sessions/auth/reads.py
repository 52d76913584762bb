"""Reads of sessions outside the request path's one-statement lookups: a user's live sessions, a token's session."""

from functools import cache

from sqlalchemy import bindparam, select

from models import ACTIVITY_COLUMNS, PUBLIC_COLUMNS, Session, idle_before, live
from zipline_sessions.security import credentials
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.reader import read_rows
from zipline_sessions.storage.timestamps import InstantBound

_SESSION_BY_TOKEN = select(Session.c.id, Session.c.user_id, Session.c.expires_at, Session.c.last_seen_at,
                           Session.c.created_at).where(Session.c.token_hash == bindparam("token_hash"))


def find_session_by_token(token: str):
    """The session row (id, user_id, expires_at, last_seen_at, created_at) a session token
    names, live or not (ended_because says)."""
    rows = read_rows(_SESSION_BY_TOKEN, {"token_hash": credentials.hash_token(token)})
    return rows[0] if rows else None


def list_sessions(user_id: int, fields: bool = False) -> list:
    """A user's live sessions, oldest first (ties by id), as public rows (`fields`: with their
    last activity)."""
    now = utcnow()
    cutoff = idle_before(now)
    params = {"user_id": user_id, "now": now}
    if cutoff is not None:
        params["idle_before"] = cutoff
    return read_rows(_live_sessions(fields, cutoff is not None), params)


@cache
def _live_sessions(fields: bool, idle: bool = False):
    shown = (*PUBLIC_COLUMNS, *ACTIVITY_COLUMNS) if fields else PUBLIC_COLUMNS
    cutoff = bindparam("idle_before", type_=InstantBound()) if idle else None
    return (select(*shown)
            .where(Session.c.user_id == bindparam("user_id"), live(bindparam("now", type_=InstantBound()), cutoff))
            .order_by(Session.c.created_at, Session.c.id))
