"""Who a request's credentials name: the request path's statements, built once, one indexed query each."""

from datetime import datetime
from functools import cache
from typing import NamedTuple

from sqlalchemy import Integer, and_, bindparam, literal_column, or_, select, type_coerce

from models import ACTIVITY_COLUMNS, PUBLIC_COLUMNS, Session, User, live
from zipline_sessions.security import credentials
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.reader import read_rows, read_tuples
from zipline_sessions.storage.timestamps import InstantBound, SecondsBound


def _flag(condition):
    """A condition read as the database gives it (1/0, or a bool): truthy where it holds,
    without a Python conversion per row."""
    return type_coerce(condition, Integer)


# The request path's statements, built once: building a statement per request costs more
# than running it. Each is indexed lookups only (see tests/test_query_plans.py). There is one
# set per activity configuration (read_statements): with activity off they are the plain ones.
_ME = Session.alias("me")


def _now():
    """The request's `now`, a parameter of most reads: converted for the driver on every request."""
    return bindparam("now", type_=InstantBound())


def _stale(is_current, touch: bool):
    """The cookie's session is due an activity write: not seen since :stale_before (in SQL, so
    the rows need no per-row Python and the GET reads no datetime); always 0 when activity is
    not recorded (`touch` false), so that the rows keep one layout."""
    if not touch:
        return literal_column("0").label("stale")
    return _flag(and_(is_current, or_(Session.c.last_seen_at.is_(None),
                                     Session.c.last_seen_at < bindparam("stale_before", type_=SecondsBound())))
                 ).label("stale")


class ReadStatements(NamedTuple):
    seen_with_token: object
    seen_with_cookie: object
    identity_by_token: object
    identity_by_cookie: object


@cache
def read_statements(touch: bool, fields: bool, idle: bool = False) -> ReadStatements:
    """The request path's statements; `touch`: also a `stale` flag on the cookie's session;
    `fields`: also its last activity columns (ACTIVITY_COLUMNS); `idle`: a session used (or,
    never used, created) at or before :idle_before is not live (SESSIONS_IDLE_TIMEOUT)."""
    shown = (*PUBLIC_COLUMNS, *ACTIVITY_COLUMNS) if fields else PUBLIC_COLUMNS
    cutoff = bindparam("idle_before", type_=InstantBound()) if idle else None

    def alive(table=Session):
        return live(_now(), cutoff, table)

    # Token (and maybe cookie): the user and all their live sessions, the cookie's one marked.
    # The outer join keeps one row for a user who has no session.
    by_token = Session.c.token_hash == bindparam("cookie_hash")
    seen_with_token = (
        select(*shown, User.id.label("user_id"), _flag(by_token).label("is_current"), _stale(by_token, touch))
        .select_from(User.__table__.outerjoin(
            Session, and_(Session.c.user_id == User.id, alive())))
        .where(User.api_token_hash == bindparam("token_hash"))
        .order_by(Session.c.created_at, Session.c.id)
    )
    # Cookie alone: its live session's user, and all that user's live sessions.
    mine = Session.c.id == _ME.c.id
    seen_with_cookie = (
        select(*shown, _ME.c.user_id, _flag(mine).label("is_current"), _stale(mine, touch))
        .select_from(_ME.join(
            Session, and_(Session.c.user_id == _ME.c.user_id, alive())))
        .where(_ME.c.token_hash == bindparam("cookie_hash"), alive(_ME))
        .order_by(Session.c.created_at, Session.c.id)
    )
    # Verify: the user a token or a live session's cookie names, in one row and no session list.
    # With a token, the cookie's session is joined only when it is that user's and live.
    identity = (User.id.label("user_id"), User.username, User.is_admin, Session.c.id.label("session_id"),
                _stale(Session.c.id.is_not(None), touch))
    identity_by_token = (
        select(*identity)
        .select_from(User.__table__.outerjoin(Session, and_(
            Session.c.token_hash == bindparam("cookie_hash"), Session.c.user_id == User.id, alive())))
        .where(User.api_token_hash == bindparam("token_hash"))
    )
    identity_by_cookie = (
        select(*identity)
        .select_from(Session.join(User.__table__, User.id == Session.c.user_id))
        .where(Session.c.token_hash == bindparam("cookie_hash"), alive())
    )
    return ReadStatements(seen_with_token, seen_with_cookie, identity_by_token, identity_by_cookie)


PLAIN = read_statements(touch=False, fields=False)


# Where the flags are in a row of sessions_seen_by, after the session columns.
SEEN_USER_ID, SEEN_IS_CURRENT, SEEN_STALE = -3, -2, -1


def sessions_seen_by(token: str | None, cookie: str | None, activity=None, fields: bool | None = None) -> list:
    """One query for a sessions request: plain tuples (*session columns, user_id, is_current,
    stale), the session columns first and in the wire's order (schemas.dump_session_list reads
    them by position).

    With a token: the token's user and their live sessions (one row with id None when they
    have none), is_current on the one the cookie names. Without: the user of the cookie's
    live session and their live sessions. No row: neither names anyone. `activity`
    (last_seen.Activity) picks the statements and gives :stale_before; `fields` (not None)
    overrides whether the rows carry the last activity columns (the pages always show them).
    """
    statements, params = _read_setup(activity, utcnow(), fields)
    if token is not None:
        params["token_hash"] = credentials.hash_token(token)
        params["cookie_hash"] = credentials.hash_token(cookie) if cookie else None
        return read_tuples(statements.seen_with_token, params)
    params["cookie_hash"] = credentials.hash_token(cookie)
    return read_tuples(statements.seen_with_cookie, params)


def _read_setup(activity, now: datetime, fields: bool | None = None) -> tuple[ReadStatements, dict]:
    if activity is None:
        return (PLAIN if not fields else read_statements(False, True)), {"now": now}
    statements = read_statements(activity.touch_every is not None, activity.fields if fields is None else fields,
                                 activity.idle_after is not None)
    if activity.touch_every is None:
        return statements, {"now": now}
    # Whole seconds: the throttle needs no finer, and the parameter's conversion is then cached.
    params = {"now": now, "stale_before": now.replace(microsecond=0) - activity.touch_every}
    if activity.idle_after is not None:
        params["idle_before"] = now - activity.idle_after  # models.idle_before, to the millisecond
    return statements, params


def identity_of(token: str | None, cookie: str | None, activity=None):
    """One row (user_id, username, is_admin, session_id[, stale]) for verify, or None: neither
    names anyone.

    A token names the user, and session_id is the cookie's session only when it is that user's
    live one. Without a token, the cookie's live session names both. Reads only.
    """
    statements, params = _read_setup(activity, utcnow())
    if token is not None:
        cookie_hash = credentials.hash_token(cookie) if cookie else None
        params.update(token_hash=credentials.hash_token(token), cookie_hash=cookie_hash)
        rows = read_rows(statements.identity_by_token, params)
    else:
        params["cookie_hash"] = credentials.hash_token(cookie)
        rows = read_rows(statements.identity_by_cookie, params)
    return rows[0] if rows else None
