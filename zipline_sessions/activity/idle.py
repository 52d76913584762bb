"""The idle timeout (SESSIONS_IDLE_TIMEOUT): a session unused that long ends as an expired one does.

The rule is models.idle_before: a session is idle once its recorded last use (or, never used,
its sign-in) is older than the timeout plus the most the record lags a use (the touch throttle
and a worker's batch), so that a session in use is never cut. Every read of live sessions
applies it (models.live, auth/lookup.py); this module says why a session found by its token
ended, and purges idle sessions with the expired ones.
"""

from datetime import datetime

from sqlalchemy import and_, delete, select

import models
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db

_Session = models.Session


def ended_because(session, now: datetime) -> str | None:
    """Why a session row (expires_at, last_seen_at, created_at) is no longer live: "ttl" (its
    absolute lifetime), "idle", or None while it is live."""
    if session.expires_at <= now:
        return "ttl"
    cutoff = models.idle_before(now)
    if cutoff is not None and (session.last_seen_at or session.created_at) <= cutoff:
        return "idle"
    return None


def purge_idle(limit: int | None = None) -> list:
    """Inside a write transaction, with an idle timeout: delete idle sessions still inside their
    lifetime (at most `limit`): those last used before the cutoff, then those never used and
    created before it, each found on ix_sessions_last_seen_at_created_at. The ended rows."""
    now = utcnow()
    cutoff = models.idle_before(now)
    if cutoff is None:
        return []
    ended = []
    for idle, oldest_first in ((_Session.c.last_seen_at <= cutoff, _Session.c.last_seen_at),
                               (and_(_Session.c.last_seen_at.is_(None), _Session.c.created_at <= cutoff),
                                _Session.c.created_at)):
        left = None if limit is None else limit - len(ended)
        if left == 0:
            break
        chosen = select(_Session.c.id).where(idle, _Session.c.expires_at > now).order_by(oldest_first).limit(left)
        statement = delete(_Session).where(_Session.c.id.in_(chosen.scalar_subquery())).returning(
            *models.ENDED_COLUMNS)
        ended += db.session.execute(statement).all()
    return ended
