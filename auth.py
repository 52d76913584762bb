"""Who is calling: the API token, the session cookie, or both; and the cookie itself."""

from dataclasses import dataclass

from flask import after_this_request, current_app, request
from werkzeug.exceptions import Unauthorized

import models
from database import write_transaction

INVALID_SESSION = "Invalid login session"


@dataclass(frozen=True)
class Caller:
    user_id: int
    session_id: str | None  # the session the cookie names, when it is this user's
    sessions: list  # the user's live sessions when the caller was resolved, oldest first


def resolve_caller() -> Caller:
    """The caller of a sessions request, with their live sessions; or 401 "Invalid login session".

    A token names the user (a wrong one is refused even beside a good cookie); the cookie's
    session is current only if it is that user's. Without a token the cookie decides.
    """
    header = request.headers.get("Authorization")
    cookie = session_cookie()
    if header is None and cookie is None:
        raise Unauthorized(INVALID_SESSION)
    rows = models.sessions_seen_by(_strip_bearer(header) if header is not None else None, cookie)
    current = next((row for row in rows if row.is_current), None)
    if cookie is not None and current is None:
        current_session()  # the cookie named no live session of this user: purge it if expired
    if not rows:
        raise Unauthorized(INVALID_SESSION)
    return Caller(rows[0].user_id, current.id if current else None, [row for row in rows if row.id is not None])


def session_cookie() -> str | None:
    """The session token the request's cookie carries, or None (no cookie, or an empty one)."""
    return request.cookies.get(current_app.config["COOKIE_NAME"]) or None


def current_session():
    """The live session the cookie names, or None; an expired one is purged on sight."""
    token = session_cookie()
    if token is None:
        return None
    session = models.find_session_by_token(token)
    if session is None:
        return None
    if session.expires_at <= models.utcnow():
        with write_transaction():
            models.end_session(session.id)
        return None
    return session


def logged_in_session():
    """The live session the cookie names; else 401 "Invalid login session", clearing a stale or
    unknown cookie on the way (the browser stops sending what no longer logs anyone in)."""
    session = current_session()
    if session is None:
        if session_cookie() is not None:
            after_this_request(clear_session_cookie)
        raise Unauthorized(INVALID_SESSION)
    return session


def _strip_bearer(header: str) -> str:
    scheme, _, rest = header.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" and rest else header.strip()


def set_session_cookie(response, token: str) -> None:
    config = current_app.config
    response.set_cookie(
        config["COOKIE_NAME"], token, max_age=config["TTL_SECONDS"], path="/",
        httponly=True, samesite="Lax", secure=config["COOKIE_SECURE"],
    )


def clear_session_cookie(response):
    config = current_app.config
    response.set_cookie(
        config["COOKIE_NAME"], "", max_age=0, expires=0, path="/",
        httponly=True, samesite="Lax", secure=config["COOKIE_SECURE"],
    )
    return response
