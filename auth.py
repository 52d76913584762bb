"""Who is calling: the API token, the session cookie, or both; and the cookie itself."""

from dataclasses import dataclass

from flask import current_app, request
from werkzeug.exceptions import Unauthorized

import models
from database import write_transaction

INVALID_SESSION = "Invalid login session"


@dataclass(frozen=True)
class Caller:
    user_id: int
    session_id: str | None  # the session the cookie names, when it is this user's


def resolve_caller() -> Caller:
    """The caller of a sessions request, or 401 "Invalid login session"."""
    header = request.headers.get("Authorization")
    session = current_session()
    if header is not None:
        user_id = models.find_user_id_by_token(_strip_bearer(header))
        if user_id is None:
            # A wrong token is refused even beside a good cookie.
            raise Unauthorized(INVALID_SESSION)
        mine = session is not None and session.user_id == user_id
        return Caller(user_id, session.id if mine else None)
    if session is None:
        raise Unauthorized(INVALID_SESSION)
    return Caller(session.user_id, session.id)


def current_session():
    """The live session the cookie names, or None; an expired one is purged on sight."""
    token = request.cookies.get(current_app.config["COOKIE_NAME"])
    if not token:
        return None
    session = models.find_session_by_token(token)
    if session is None:
        return None
    if session.expires_at <= models.utcnow():
        with write_transaction():
            models.end_session(session.id)
        return None
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


def clear_session_cookie(response) -> None:
    config = current_app.config
    response.set_cookie(
        config["COOKIE_NAME"], "", max_age=0, expires=0, path="/",
        httponly=True, samesite="Lax", secure=config["COOKIE_SECURE"],
    )
