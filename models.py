"""The users and sessions tables, and the queries the routes and commands need."""

from datetime import datetime, timedelta
from typing import NamedTuple

from flask import current_app
from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    String,
    and_,
    delete,
    false,
    func,
    select,
    type_coerce,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column

from zipline_sessions.devices import known
from zipline_sessions.devices.fingerprint import fingerprint as device_fingerprint
from zipline_sessions.devices.useragent import MAX_UA_LENGTH, clean_ua, describe
from zipline_sessions.security import credentials
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db
from zipline_sessions.storage.timestamps import WireTimestamp


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


















def rotate_session_token(session_id: str, token: str, ttl_seconds: int) -> None:
    """Inside a write transaction: the session is named by `token` from now on (the old cookie
    names nothing), and lasts `ttl_seconds` from now, as a fresh login's would."""
    db.session.execute(update(Session).where(Session.c.id == session_id).values(
        token_hash=credentials.hash_token(token), expires_at=utcnow() + timedelta(seconds=ttl_seconds)))








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


