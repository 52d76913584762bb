"""Who is calling: the API token, the session cookie, or both; and the cookie itself."""

from dataclasses import dataclass
from typing import NamedTuple

from flask import after_this_request, current_app, request
from werkzeug.exceptions import Unauthorized

import models
from zipline_sessions.activity import events, idle, last_seen
from zipline_sessions.auth import lookup, reads
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import write_transaction

INVALID_SESSION = "Invalid login session"


class InvalidCredential(Unauthorized):
    """401 "Invalid login session" for a credential that was presented and names no one now: a
    wrong token, a stale, revoked or expired cookie. Zipline's user middleware answers these
    2001 "Invalid token" (no credential at all: 2000); web/errors.py reads `zipline`."""

    zipline = (2001, "Invalid token")

    def __init__(self):
        super().__init__(INVALID_SESSION)


class Caller(NamedTuple):
    user_id: int
    session_id: str | None  # the session the cookie names, when it is this user's
    # The user's live sessions when the caller was resolved, oldest first: rows whose first
    # columns are a Session's on the wire (lookup.sessions_seen_by).
    sessions: list
    activity_fields: bool = False  # the rows carry last activity to show (SESSIONS_ACTIVITY_FIELDS)


def resolve_caller(cookie_only: bool = False) -> Caller:
    """The caller of a sessions request, with their live sessions; or 401 "Invalid login session".

    A token names the user (a wrong one is refused even beside a good cookie); the cookie's
    session is current only if it is that user's. Without a token the cookie decides.
    `cookie_only` (the pages: a browser's own session): only the cookie counts, and the rows
    always carry the sessions' last activity.
    """
    token, cookie = presented_credentials(cookie_only)
    seen = last_seen.current()
    rows = lookup.sessions_seen_by(token, cookie, seen, fields=True if cookie_only else None)
    current = None
    for row in rows:
        if row[lookup.SEEN_IS_CURRENT]:
            current = row
            break
    if cookie is not None and current is None:
        current_session()  # the cookie named no live session of this user: purge it if expired
    if not rows:
        raise InvalidCredential()
    if current is not None and current[lookup.SEEN_STALE] and seen.touch_every is not None:
        seen.touch_later(current[0])
    # A user with no live session has one row, its session columns None (an outer join).
    return Caller(rows[0][lookup.SEEN_USER_ID], None if current is None else current[0],
                  rows if rows[0][0] is not None else [], cookie_only or seen.fields)


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: int
    username: str
    is_admin: bool
    session_id: str | None  # the cookie's session, when it is this user's live one


def identify_caller() -> Identity:
    """Who is calling, by the sessions routes' rules, from one read and no session list
    (verify runs on every file request); or 401 "Invalid login session". An expired cookie is
    refused, not purged: the one write it may make is the cookie's session's activity, at most
    once per SESSIONS_TOUCH_SECONDS, after the response."""
    seen = last_seen.current()
    row = lookup.identity_of(*presented_credentials(), seen)
    if row is None:
        raise InvalidCredential()
    if seen.touch_every is not None and row.stale:
        seen.touch_later(row.session_id)
    return Identity(row.user_id, row.username, bool(row.is_admin), row.session_id)


def current_session():
    """The live session the cookie names, or None; an expired or idle one is purged on sight."""
    token = session_cookie()
    if token is None:
        return None
    session = reads.find_session_by_token(token)
    if session is None:
        return None
    reason = idle.ended_because(session, clock.utcnow())
    if reason is not None:
        with write_transaction():
            events.record_expired([models.end_session(session.id)], reason)
        return None
    return session


def presented_credentials(cookie_only: bool = False) -> tuple[str | None, str | None]:
    """(API token, session cookie) as the request presents them; 401 when it presents neither.

    A present Authorization header counts even when empty or wrong: it is then refused, even
    beside a good cookie. `cookie_only`: the header is not looked at."""
    environ = request.environ
    header = None if cookie_only else environ.get("HTTP_AUTHORIZATION")
    cookie = session_cookie(environ)
    if header is None and cookie is None:
        raise Unauthorized(INVALID_SESSION)
    return (_strip_bearer(header) if header is not None else None), cookie


def session_cookie(environ: dict | None = None) -> str | None:
    """The session cookie's value, or None when it is missing or empty (`environ`: the
    request's, when the caller has it at hand).

    The value `request.cookies` gives (tests/test_auth.py holds the two equal), without
    parsing every cookie a browser sends into a dict on each request: a header of plain ASCII
    name=value pairs is split here; anything quoted, escaped, spaced or outside ASCII goes to
    werkzeug's parser.
    """
    header = (request.environ if environ is None else environ).get("HTTP_COOKIE")
    if not header:
        return None
    name = current_app.config["COOKIE_NAME"]
    if not header.isascii() or '"' in header or "\\" in header or "\t" in header:
        return request.cookies.get(name) or None
    for part in header.split(";"):
        part = part.strip(" ")
        if " " in part:
            return request.cookies.get(name) or None
        key, _, value = part.partition("=")
        if key == name:
            return value or None
    return None


def logged_in_session():
    """The live session the cookie names; else 401 "Invalid login session", clearing a stale or
    unknown cookie on the way (the browser stops sending what no longer logs anyone in)."""
    session = current_session()
    if session is None:
        if session_cookie() is not None:
            after_this_request(clear_session_cookie)
            raise InvalidCredential()
        raise Unauthorized(INVALID_SESSION)
    return session


def _strip_bearer(header: str) -> str:
    scheme, _, rest = header.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else header.strip()


def cookie_is_secure() -> bool:
    """Whether the cookies this service sets get `Secure`: SESSIONS_COOKIE_SECURE when set, else
    whenever the service is reached over HTTPS (SESSIONS_PUBLIC_ORIGIN is https, or the request
    came over HTTPS: directly, or as a trusted proxy's X-Forwarded-Proto says)."""
    config = current_app.config
    forced = config["COOKIE_SECURE"]
    if forced is not None:
        return forced
    return (config["PUBLIC_ORIGIN"] or "").lower().startswith("https://") or request.is_secure


def set_session_cookie(response, token: str) -> None:
    config = current_app.config
    response.set_cookie(
        config["COOKIE_NAME"], token, max_age=config["TTL_SECONDS"], path="/",
        httponly=True, samesite=config["COOKIE_SAMESITE"], secure=cookie_is_secure(),
    )


def clear_session_cookie(response):
    config = current_app.config
    response.set_cookie(
        config["COOKIE_NAME"], "", max_age=0, expires=0, path="/",
        httponly=True, samesite=config["COOKIE_SAMESITE"], secure=cookie_is_secure(),
    )
    return response
