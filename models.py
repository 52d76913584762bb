"""The users and sessions tables, and the queries the routes and commands need."""

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import NamedTuple

from sqlalchemy import (
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    case,
    delete,
    false,
    literal_column,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

import credentials
from database import db, read_rows, read_tuples
from timestamps import InstantBound, SecondsBound, WireTimestamp
from useragent import MAX_UA_LENGTH, clean_ua, describe

# Where "now" comes from when it is not the real clock: set by test_control.py when an app with
# SESSIONS_TEST_CONTROL is built (never otherwise); it answers None outside such an app.
clock_hook = None


def utcnow() -> datetime:
    """Now in UTC, naive (as stored), to the millisecond the wire format shows: the service's clock."""
    if clock_hook is not None and (now := clock_hook()) is not None:
        return now
    now = datetime.now(UTC)
    return now.replace(tzinfo=None, microsecond=now.microsecond // 1000 * 1000)


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    # None: a token-only user, who cannot log in with a password.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # None: a user with no API token, who can only use session cookies.
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Admins list and revoke any user's sessions (admin.py).
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())


class LoginSession(db.Model):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_id_created_at_id", "user_id", "created_at", "id"),  # the list, in order
        Index("ix_sessions_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ua: Mapped[str] = mapped_column(String(MAX_UA_LENGTH), default="")
    client: Mapped[str] = mapped_column(String(255))
    device: Mapped[str] = mapped_column(String(16))
    # Last activity (activity.py): when the session was last used, and from where; None until
    # its first use after the migration, or when activity is not recorded.
    last_seen_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(45))


class SessionEvent(db.Model):
    """The webhook outbox (events.py): one session event, until its receiver has taken it."""

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


class LoginAttempt(db.Model):
    """One login limit's count for one key, in a window that starts at the key's first attempt."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_resets_at", "resets_at"),)

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 hex of what is counted
    attempts: Mapped[int]
    resets_at: Mapped[datetime]  # the window's end; at or after it the row is stale


# The test-control tables (test_control.py uses them; they exist whether or not it is on, as
# the migrations make every table).
class ServiceClock(db.Model):
    """One row (id 1): the instant the service's clock stands at, or NULL for real time."""

    __tablename__ = "test_clock"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    fixed_at: Mapped[datetime | None]


class InjectedFault(db.Model):
    """What the next requests to one route get instead of (or before) their answer."""

    __tablename__ = "test_faults"

    route: Mapped[str] = mapped_column(String(300), primary_key=True)  # "GET /api/user/sessions"
    status: Mapped[int | None]  # answer this error status
    message: Mapped[str | None] = mapped_column(String(255))  # with this message
    delay_ms: Mapped[int | None]  # wait this long first
    jitter_ms: Mapped[int | None]  # and up to this much more, at random
    drop_connection: Mapped[bool] = mapped_column(default=False, server_default=false())
    remaining: Mapped[int | None]  # how many more requests it applies to; NULL: every one


class JournalEntry(db.Model):
    """The journal: one row per request received since the last reset (no secret, no body)."""

    __tablename__ = "test_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    status: Mapped[int | None]  # None: the connection was dropped
    at: Mapped[datetime]  # the service's clock
    username: Mapped[str | None] = mapped_column(String(255))
    fault: Mapped[str | None] = mapped_column(String(255))  # the fault applied, as JSON


Session = LoginSession.__table__
# What a caller may see of a session, never the token hash; created_at comes out as its
# wire text (timestamps.py).
PUBLIC_COLUMNS = (Session.c.id, type_coerce(Session.c.created_at, WireTimestamp()).label("created_at"),
                  Session.c.ua, Session.c.client, Session.c.device)
# Last activity, shown with SESSIONS_ACTIVITY_FIELDS (and in the admin list, the CLI, events).
ACTIVITY_COLUMNS = (type_coerce(Session.c.last_seen_at, WireTimestamp()).label("last_seen_at"), Session.c.ip)
# A session as it ends (for its event): its user and everything public about it.
ENDED_COLUMNS = (Session.c.user_id, *PUBLIC_COLUMNS, *ACTIVITY_COLUMNS)


def create_user(username: str, password_hash: str | None, is_admin: bool = False) -> tuple[User, str]:
    """Add a user (password hashed beforehand: credentials.hash_password) with a fresh API token;
    returns the user and the token (shown once)."""
    token = credentials.new_token()
    user = User(
        username=username,
        password_hash=password_hash,
        api_token_hash=credentials.hash_token(token),
        is_admin=is_admin,
    )
    db.session.add(user)
    db.session.flush()
    return user, token


def find_user_by_name(username: str) -> User | None:
    if not _storable(username):
        return None  # no user can have this name, and PostgreSQL would refuse to compare it
    return db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def _flag(condition):
    """A condition read as the database gives it (1/0, or a bool): truthy where it holds,
    without a Python conversion per row."""
    return type_coerce(condition, Integer)


def _storable(text: str) -> bool:
    """Text a database column can hold: no NUL, no lone surrogate."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def set_admin(user_id: int, is_admin: bool) -> None:
    db.session.execute(update(User).where(User.id == user_id).values(is_admin=is_admin))


def user_is_admin(user_id: int) -> bool:
    """Inside a write transaction: whether the user is (still) an admin."""
    return bool(db.session.execute(select(User.is_admin).where(User.id == user_id)).scalar_one_or_none())


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
    live_sessions: object


@cache
def read_statements(touch: bool, fields: bool) -> ReadStatements:
    """The request path's statements; `touch`: also a `stale` flag on the cookie's session;
    `fields`: also its last activity columns (ACTIVITY_COLUMNS)."""
    shown = (*PUBLIC_COLUMNS, *ACTIVITY_COLUMNS) if fields else PUBLIC_COLUMNS
    # Token (and maybe cookie): the user and all their live sessions, the cookie's one marked.
    # The outer join keeps one row for a user who has no session.
    by_token = Session.c.token_hash == bindparam("cookie_hash")
    seen_with_token = (
        select(*shown, User.id.label("user_id"), _flag(by_token).label("is_current"), _stale(by_token, touch))
        .select_from(User.__table__.outerjoin(
            Session, and_(Session.c.user_id == User.id, Session.c.expires_at > _now())))
        .where(User.api_token_hash == bindparam("token_hash"))
        .order_by(Session.c.created_at, Session.c.id)
    )
    # Cookie alone: its live session's user, and all that user's live sessions.
    mine = Session.c.id == _ME.c.id
    seen_with_cookie = (
        select(*shown, _ME.c.user_id, _flag(mine).label("is_current"), _stale(mine, touch))
        .select_from(_ME.join(
            Session, and_(Session.c.user_id == _ME.c.user_id, Session.c.expires_at > _now())))
        .where(_ME.c.token_hash == bindparam("cookie_hash"), _ME.c.expires_at > _now())
        .order_by(Session.c.created_at, Session.c.id)
    )
    # Verify: the user a token or a live session's cookie names, in one row and no session list.
    # With a token, the cookie's session is joined only when it is that user's and live.
    identity = (User.id.label("user_id"), User.username, User.is_admin, Session.c.id.label("session_id"),
                _stale(Session.c.id.is_not(None), touch))
    identity_by_token = (
        select(*identity)
        .select_from(User.__table__.outerjoin(Session, and_(
            Session.c.token_hash == bindparam("cookie_hash"), Session.c.user_id == User.id,
            Session.c.expires_at > _now())))
        .where(User.api_token_hash == bindparam("token_hash"))
    )
    identity_by_cookie = (
        select(*identity)
        .select_from(Session.join(User.__table__, User.id == Session.c.user_id))
        .where(Session.c.token_hash == bindparam("cookie_hash"), Session.c.expires_at > _now())
    )
    live_sessions = (
        select(*shown)
        .where(Session.c.user_id == bindparam("user_id"), Session.c.expires_at > _now())
        .order_by(Session.c.created_at, Session.c.id)
    )
    return ReadStatements(seen_with_token, seen_with_cookie, identity_by_token, identity_by_cookie, live_sessions)


PLAIN = read_statements(touch=False, fields=False)
_SESSION_BY_TOKEN = select(Session.c.id, Session.c.user_id, Session.c.expires_at).where(
    Session.c.token_hash == bindparam("token_hash")
)


# Where the flags are in a row of sessions_seen_by, after the session columns.
SEEN_USER_ID, SEEN_IS_CURRENT, SEEN_STALE = -3, -2, -1


def sessions_seen_by(token: str | None, cookie: str | None, activity=None) -> list:
    """One query for a sessions request: plain tuples (*session columns, user_id, is_current,
    stale), the session columns first and in the wire's order (schemas.dump_session_list reads
    them by position).

    With a token: the token's user and their live sessions (one row with id None when they
    have none), is_current on the one the cookie names. Without: the user of the cookie's
    live session and their live sessions. No row: neither names anyone. `activity`
    (activity.Activity) picks the statements and gives :stale_before.
    """
    statements, params = _read_setup(activity, utcnow())
    if token is not None:
        params["token_hash"] = credentials.hash_token(token)
        params["cookie_hash"] = credentials.hash_token(cookie) if cookie else None
        return read_tuples(statements.seen_with_token, params)
    params["cookie_hash"] = credentials.hash_token(cookie)
    return read_tuples(statements.seen_with_cookie, params)


def _read_setup(activity, now: datetime) -> tuple[ReadStatements, dict]:
    if activity is None:
        return PLAIN, {"now": now}
    if activity.touch_every is None:
        return activity.statements, {"now": now}
    # Whole seconds: the throttle needs no finer, and the parameter's conversion is then cached.
    return activity.statements, {"now": now, "stale_before": now.replace(microsecond=0) - activity.touch_every}


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


def find_session_by_token(token: str):
    """The session row (id, user_id, expires_at) a session token names, live or not."""
    rows = read_rows(_SESSION_BY_TOKEN, {"token_hash": credentials.hash_token(token)})
    return rows[0] if rows else None


def list_sessions(user_id: int, fields: bool = False) -> list:
    """A user's live sessions, oldest first (ties by id), as public rows (`fields`: with their
    last activity)."""
    return read_rows(read_statements(False, fields).live_sessions, {"user_id": user_id, "now": utcnow()})


class OpenedSession(NamedTuple):
    id: str
    token: str  # for the cookie; only its hash is stored
    client: str
    device: str
    # The rest of the new row, for its session.created event.
    user_id: int = 0
    created_at: datetime | None = None
    ua: str = ""
    last_seen_at: datetime | None = None
    ip: str | None = None


def open_session(user_id: int, user_agent: str | None, ttl_seconds: int, seen: bool = False,
                 ip: str | None = None) -> OpenedSession:
    """Insert a session for a login; `seen`: the login is its first use, from `ip`."""
    ua = clean_ua(user_agent)
    client, device = describe(ua)
    now = utcnow()
    opened = OpenedSession(credentials.new_session_id(), credentials.new_token(), client, device, user_id, now, ua,
                           now if seen else None, ip if seen else None)
    db.session.execute(
        Session.insert().values(
            id=opened.id, token_hash=credentials.hash_token(opened.token), user_id=user_id,
            created_at=now, expires_at=now + timedelta(seconds=ttl_seconds),
            ua=ua, client=client, device=device, last_seen_at=opened.last_seen_at, ip=opened.ip,
        )
    )
    return opened


def lock_user(user_id: int) -> str | None:
    """Inside a write transaction: serialise this user's revocations; returns the username.

    PostgreSQL takes the user's row lock here; SQLite already holds the database write lock.
    """
    query = select(User.username).where(User.id == user_id).with_for_update()
    return db.session.execute(query).scalar_one_or_none()


def api_token_is(user_id: int, token: str) -> bool:
    """Inside a write transaction: whether `token` is (still) the user's API token."""
    query = select(User.id).where(User.id == user_id, User.api_token_hash == credentials.hash_token(token))
    return db.session.execute(query).first() is not None


def set_api_token(user_id: int, token: str) -> None:
    """Replace the user's API token: only its hash is stored, and the old one names no one."""
    db.session.execute(update(User).where(User.id == user_id).values(api_token_hash=credentials.hash_token(token)))


def set_password_hash(user_id: int, password_hash: str) -> None:
    db.session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


def end_oldest_sessions(user_id: int, keep: str, limit: int) -> list:
    """Inside a write transaction: delete the user's oldest live sessions so that `limit` remain,
    `keep` (the one just opened) always among them; the ended rows, oldest first."""
    beyond = (
        select(Session.c.id)
        .where(Session.c.user_id == user_id, Session.c.expires_at > utcnow(), Session.c.id != keep)
        .order_by(Session.c.created_at.desc(), Session.c.id.desc())
        .offset(limit - 1)
    )
    statement = delete(Session).where(Session.c.id.in_(beyond.scalar_subquery())).returning(*ENDED_COLUMNS)
    return sorted(db.session.execute(statement).all(), key=lambda row: (row.created_at, row.id))


def replace_password_hash(user_id: int, old_hash: str, new_hash: str) -> bool:
    """Inside a write transaction: store `new_hash` unless the hash changed meanwhile."""
    statement = update(User).where(User.id == user_id, User.password_hash == old_hash).values(
        password_hash=new_hash)
    return db.session.execute(statement).rowcount == 1


def session_is_live(session_id: str) -> bool:
    query = select(Session.c.id).where(Session.c.id == session_id, Session.c.expires_at > utcnow())
    return db.session.execute(query).first() is not None


# The functions that end sessions answer the ended rows (ENDED_COLUMNS): their events need them.

def revoke_session(user_id: int, session_id: str):
    """Delete one of the user's live sessions; the ended row, or None if there is no such session."""
    return db.session.execute(
        delete(Session).where(
            Session.c.id == session_id, Session.c.user_id == user_id, Session.c.expires_at > utcnow()
        ).returning(*ENDED_COLUMNS)
    ).first()


def revoke_other_sessions(user_id: int, keep: str | None) -> list:
    """Delete every session of the user but `keep` (all when None), in one statement; the ended rows."""
    condition = Session.c.user_id == user_id
    if keep is not None:
        condition &= Session.c.id != keep
    return db.session.execute(delete(Session).where(condition).returning(*ENDED_COLUMNS)).all()


def end_user_session_by_token(user_id: int, token: str):
    """Delete the live session `token` names if it is `user_id`'s; the ended row, or None."""
    query = (delete(Session)
             .where(Session.c.token_hash == credentials.hash_token(token), Session.c.user_id == user_id,
                    Session.c.expires_at > utcnow())
             .returning(*ENDED_COLUMNS))
    return db.session.execute(query).first()


def end_session(session_id: str):
    """Delete one session by id (log out, or an expired one met on the way); the ended row or None."""
    return db.session.execute(delete(Session).where(Session.c.id == session_id).returning(*ENDED_COLUMNS)).first()


def purge_expired(limit: int | None = None) -> list:
    """Delete expired sessions (at most `limit`, oldest expiry first); the ended rows."""
    expired = Session.c.expires_at <= utcnow()
    if limit is not None:
        oldest = select(Session.c.id).where(expired).order_by(Session.c.expires_at).limit(limit)
        expired = Session.c.id.in_(oldest.scalar_subquery())
    return db.session.execute(delete(Session).where(expired).returning(*ENDED_COLUMNS)).all()


def usernames(user_ids) -> dict[int, str]:
    """{user id: username} for these users (those that still exist)."""
    if not user_ids:
        return {}
    return dict(db.session.execute(select(User.id, User.username).where(User.id.in_(set(user_ids)))).all())


_ATTEMPTS = LoginAttempt.__table__
_UPSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


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
        _UPSERTS[db.session.get_bind().dialect.name](_ATTEMPTS)
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


def purge_stale_login_attempts(limit: int) -> int:
    """Delete up to `limit` counters whose window is over (oldest first); returns how many.

    Rows another transaction holds are skipped (PostgreSQL), so a purge never waits on a login.
    """
    stale = (select(_ATTEMPTS.c.key).where(_ATTEMPTS.c.resets_at <= utcnow()).order_by(_ATTEMPTS.c.resets_at)
             .limit(limit).with_for_update(skip_locked=True))
    return db.session.execute(delete(_ATTEMPTS).where(_ATTEMPTS.c.key.in_(stale.scalar_subquery()))).rowcount
