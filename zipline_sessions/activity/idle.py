"""The idle timeout (SESSIONS_IDLE_TIMEOUT): a session unused that long ends as an expired one does.

The rule is models.idle_before: a session is idle once its recorded last use (or, never used,
its sign-in) is older than the timeout plus the most the record lags a use (the touch throttle
and a worker's batch), so that a session in use is never cut. Every read of live sessions
applies it (models.live, auth/lookup.py); this module says why a session found by its token
ended, and purges idle sessions with the expired ones.
"""

from datetime import datetime

from sqlalchemy import DateTime, bindparam, delete, select

import models
from zipline_sessions.storage.clock import utcnow

_Session = models.Session
# Idle sessions still inside their lifetime, oldest first, each search on
# ix_sessions_last_seen_at_created_at (tests/test_query_plans.py): those last used at or before
# :idle_before, then those never used and created at or before it.
_NOW, _CUTOFF = bindparam("now", type_=DateTime()), bindparam("idle_before", type_=DateTime())
IDLE_CANDIDATES = (
    select(_Session.c.id).where(_Session.c.last_seen_at <= _CUTOFF, _Session.c.expires_at > _NOW)
    .order_by(_Session.c.last_seen_at),
    select(_Session.c.id).where(_Session.c.last_seen_at.is_(None), _Session.c.created_at <= _CUTOFF,
                                _Session.c.expires_at > _NOW)
    .order_by(_Session.c.last_seen_at, _Session.c.created_at),  # the index's order: PostgreSQL sorts nothing
)


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
    lifetime (at most `limit`, IDLE_CANDIDATES in turn); the ended rows."""
    now = utcnow()
    cutoff = models.idle_before(now)
    if cutoff is None:
        return []
    ended = []
    for candidates in IDLE_CANDIDATES:
        left = None if limit is None else limit - len(ended)
        if left == 0:
            break
        chosen = candidates.limit(left).scalar_subquery()
        statement = delete(_Session).where(_Session.c.id.in_(chosen)).returning(*models.ENDED_COLUMNS)
        ended += models.ended_rows(statement, {"now": now, "idle_before": cutoff})
    return ended
