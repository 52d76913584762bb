"""The users and sessions tables, and the queries the routes and commands need."""

from datetime import datetime, timedelta
from functools import cache
from typing import NamedTuple

from flask import current_app
from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    String,
    and_,
    bindparam,
    delete,
    false,
    func,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from schemas import storable_text_problem
from zipline_sessions.devices import known
from zipline_sessions.devices.fingerprint import fingerprint as device_fingerprint
from zipline_sessions.devices.useragent import MAX_UA_LENGTH, clean_ua, describe
from zipline_sessions.security import credentials
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db
from zipline_sessions.storage.reader import read_rows
from zipline_sessions.storage.timestamps import InstantBound, WireTimestamp


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(255), unique=True)
    # None: a token-only user, who cannot log in with a password.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # None: a user with no API token, who can only use session cookies.
    api_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Admins list and revoke any user's sessions (sidecar/admin.py).
    is_admin: Mapped[bool] = mapped_column(default=False, server_default=false())


class LoginSession(db.Model):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_id_created_at_id", "user_id", "created_at", "id"),  # the list, in order
        Index("ix_sessions_expires_at", "expires_at"),
        # The idle purge: sessions last used, or (never used) created, before a time.
        Index("ix_sessions_last_seen_at_created_at", "last_seen_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ua: Mapped[str] = mapped_column(String(MAX_UA_LENGTH), default="")
    client: Mapped[str] = mapped_column(String(255))
    device: Mapped[str] = mapped_column(String(16))
    # Last activity (activity/last_seen.py): when the session was last used, and from where; None until
    # its first use after the migration, or when activity is not recorded.
    last_seen_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(45))
    # Where that address is (devices/location.py: {"country", "countryCode", "city"}); None: unknown.
    location: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    # The device it was opened on, hashed (devices/fingerprint.py); None: seeded, or older than 0008.
    fingerprint: Mapped[str | None] = mapped_column(String(64))


Session = LoginSession.__table__
# What a caller may see of a session, never the token hash; created_at comes out as its
# wire text (storage/timestamps.py).
PUBLIC_COLUMNS = (Session.c.id, type_coerce(Session.c.created_at, WireTimestamp()).label("created_at"),
                  Session.c.ua, Session.c.client, Session.c.device)
# Last activity, shown with SESSIONS_ACTIVITY_FIELDS (and in the admin list, the CLI, events).
ACTIVITY_COLUMNS = (type_coerce(Session.c.last_seen_at, WireTimestamp()).label("last_seen_at"), Session.c.ip,
                    Session.c.location)
# A session as it ends: its user and everything public about it (for its event), and its device
# and last use (devices/known.py remembers them).
LAST_USED_AT = func.coalesce(Session.c.last_seen_at, Session.c.created_at, type_=DateTime)
ENDED_COLUMNS = (Session.c.user_id, *PUBLIC_COLUMNS, *ACTIVITY_COLUMNS, Session.c.fingerprint,
                 LAST_USED_AT.label("last_used_at"))


# Live: before its absolute end and, with SESSIONS_IDLE_TIMEOUT, not idle (activity/idle.py).

def idle_after(config) -> timedelta | None:
    """How long after its recorded last use a session is idle: the timeout plus the most the
    record lags a use (SESSIONS_TOUCH_SECONDS + SESSIONS_ACTIVITY_FLUSH_SECONDS); None: no timeout."""
    if not config["IDLE_TIMEOUT"]:
        return None
    return timedelta(seconds=config["IDLE_TIMEOUT"] + config["TOUCH_SECONDS"] + config["ACTIVITY_FLUSH_SECONDS"])


def idle_before(now: datetime) -> datetime | None:
    """A session last used (or, never used, created) at or before this is idle; None: no idle timeout."""
    after = idle_after(current_app.config)
    return None if after is None else now - after


def last_use(table=Session):
    """When the session was last used as recorded, or created when no use is recorded."""
    return func.coalesce(table.c.last_seen_at, table.c.created_at)


def live(now, cutoff=None, table=Session):
    """The condition of a live session of `table` (or an alias): before its absolute end at
    `now` and, with an idle timeout, used after `cutoff` (idle_before)."""
    condition = table.c.expires_at > now
    return condition if cutoff is None else and_(condition, last_use(table) > cutoff)


def live_now():
    now = utcnow()
    return live(now, idle_before(now))


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


def find_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def find_user_by_name(username: str) -> User | None:
    if storable_text_problem(username) is not None:
        return None  # no user can have this name, and PostgreSQL would refuse to compare it
    return db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def set_admin(user_id: int, is_admin: bool) -> None:
    db.session.execute(update(User).where(User.id == user_id).values(is_admin=is_admin))


def user_is_admin(user_id: int) -> bool:
    """Inside a write transaction: whether the user is (still) an admin."""
    return bool(db.session.execute(select(User.is_admin).where(User.id == user_id)).scalar_one_or_none())


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
    location: dict | None = None
    fingerprint: str | None = None


def open_session(user_id: int, user_agent: str | None, ttl_seconds: int, seen: bool = False,
                 ip: str | None = None, location: dict | None = None, network: str = "") -> OpenedSession:
    """Insert a session for a login; `seen`: the login is its first use, from `ip` (at
    `location`); `network`: where the device logs in from (fingerprint.network_of)."""
    ua = clean_ua(user_agent)
    client, device = describe(ua)
    now = utcnow()
    opened = OpenedSession(credentials.new_session_id(), credentials.new_token(), client, device, user_id, now, ua,
                           now if seen else None, ip if seen else None, location if seen else None,
                           device_fingerprint(user_id, client, device, network))
    db.session.execute(
        Session.insert().values(
            id=opened.id, token_hash=credentials.hash_token(opened.token), user_id=user_id,
            created_at=now, expires_at=now + timedelta(seconds=ttl_seconds),
            ua=ua, client=client, device=device, last_seen_at=opened.last_seen_at, ip=opened.ip,
            location=opened.location, fingerprint=opened.fingerprint,
        )
    )
    return opened


def device_is_known(user_id: int, fingerprint: str, opened: str) -> bool:
    """Inside a write transaction: whether the user had a session other than `opened` on this
    device (fingerprint) within devices.known.KNOWN_FOR: one still in the table (live, or expired
    and not yet purged) used since then, or an ended one the known devices remember."""
    query = select(Session.c.id).where(Session.c.user_id == user_id, Session.c.fingerprint == fingerprint,
                                       Session.c.id != opened, LAST_USED_AT > known.known_since()).limit(1)
    return db.session.execute(query).first() is not None or known.remembered(user_id, fingerprint)


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


def clear_api_token(user_id: int) -> bool:
    """Inside a write transaction: the user has no API token from now on; whether they had one."""
    query = update(User).where(User.id == user_id, User.api_token_hash.is_not(None)).values(api_token_hash=None)
    return db.session.execute(query).rowcount == 1


def password_hash_of(user_id: int) -> str | None:
    return db.session.execute(select(User.password_hash).where(User.id == user_id)).scalar_one_or_none()


def rename_user(user_id: int, username: str) -> None:
    db.session.execute(update(User).where(User.id == user_id).values(username=username))


def rotate_session_token(session_id: str, token: str, ttl_seconds: int) -> None:
    """Inside a write transaction: the session is named by `token` from now on (the old cookie
    names nothing), and lasts `ttl_seconds` from now, as a fresh login's would."""
    db.session.execute(update(Session).where(Session.c.id == session_id).values(
        token_hash=credentials.hash_token(token), expires_at=utcnow() + timedelta(seconds=ttl_seconds)))


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


def replace_password_hash(user_id: int, old_hash: str, new_hash: str) -> bool:
    """Inside a write transaction: store `new_hash` unless the hash changed meanwhile."""
    statement = update(User).where(User.id == user_id, User.password_hash == old_hash).values(
        password_hash=new_hash)
    return db.session.execute(statement).rowcount == 1


def session_is_live(session_id: str) -> bool:
    query = select(Session.c.id).where(Session.c.id == session_id, live_now())
    return db.session.execute(query).first() is not None


# The functions that end sessions answer the ended rows (ENDED_COLUMNS): their events need them.
# Each goes through _ended, so that no way of ending a session forgets its device.

def revoke_session(user_id: int, session_id: str):
    """Delete one of the user's live sessions; the ended row, or None if there is no such session."""
    return _first(ended_rows(
        delete(Session).where(
            Session.c.id == session_id, Session.c.user_id == user_id, live_now()
        ).returning(*ENDED_COLUMNS)
    ))


def revoke_other_sessions(user_id: int, keep: str | None) -> list:
    """Delete every session of the user but `keep` (all when None), in one statement; the ended rows."""
    condition = Session.c.user_id == user_id
    if keep is not None:
        condition &= Session.c.id != keep
    return ended_rows(delete(Session).where(condition).returning(*ENDED_COLUMNS))


def end_user_session_by_token(user_id: int, token: str):
    """Delete the live session `token` names if it is `user_id`'s; the ended row, or None."""
    query = (delete(Session)
             .where(Session.c.token_hash == credentials.hash_token(token), Session.c.user_id == user_id,
                    live_now())
             .returning(*ENDED_COLUMNS))
    return _first(ended_rows(query))


def end_session(session_id: str):
    """Delete one session by id (log out, or an expired one met on the way); the ended row or None."""
    return _first(ended_rows(delete(Session).where(Session.c.id == session_id).returning(*ENDED_COLUMNS)))


def purge_expired(limit: int | None = None) -> list:
    """Delete sessions past their absolute lifetime (at most `limit`, oldest expiry first); the ended rows."""
    expired = Session.c.expires_at <= utcnow()
    if limit is not None:
        oldest = select(Session.c.id).where(expired).order_by(Session.c.expires_at).limit(limit)
        expired = Session.c.id.in_(oldest.scalar_subquery())
    return ended_rows(delete(Session).where(expired).returning(*ENDED_COLUMNS))


def ended_rows(statement, params: dict | None = None) -> list:
    """Run a DELETE ... RETURNING ENDED_COLUMNS; the ended rows, whose devices stay known."""
    rows = db.session.execute(statement, params).all()
    known.remember((row.user_id, row.fingerprint, row.last_used_at) for row in rows)
    return rows


def _first(rows: list):
    return rows[0] if rows else None


def usernames(user_ids) -> dict[int, str]:
    """{user id: username} for these users (those that still exist)."""
    if not user_ids:
        return {}
    return dict(db.session.execute(select(User.id, User.username).where(User.id.in_(set(user_ids)))).all())


