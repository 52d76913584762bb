"""Replace a leaked credential, as Zipline v4 does: a new API token (PATCH /api/user/token), a new
password (PATCH /api/user) that also ends every other session of the user."""

from flask import Blueprint
from werkzeug.exceptions import BadRequest, NotFound, Unauthorized

import models
from schemas import (
    describe_errors,
    load_body,
    login_response_schema,
    password_change_schema,
    token_reset_response_schema,
)
from zipline_sessions.auth.caller import INVALID_SESSION, Identity, identify_caller, presented_credentials
from zipline_sessions.auth.sessions import revoke_locked
from zipline_sessions.security import credentials
from zipline_sessions.security.ratelimit import check_password_change
from zipline_sessions.security.security_log import security_event
from zipline_sessions.storage.database import write_transaction

account = Blueprint("account", __name__, url_prefix="/api")

# Zipline's GET /api/user/token shows the stored token; here only its hash is stored.
TOKEN_NOT_SHOWN = ("The API token is stored only as a hash and cannot be shown again: "
                   "PATCH /api/user/token issues a new one.")
COOKIE_ONLY = "Only a session cookie can change the password: log in first."
SAME_AS_USERNAME = "password: Must not be the username."


@account.patch("/user/token")
def reset_api_token():
    """Issue the caller a new API token (shown this once); the old one is refused from now on."""
    return token_reset_response_schema.dump(reset_token(identify_caller()))


@account.get("/user/token")
def stored_api_token():
    """Always 404: the stored token cannot be shown, only replaced."""
    raise NotFound(TOKEN_NOT_SHOWN)


@account.patch("/user")
def change_own_password():
    """Set a new password (session cookie only) and end every other session of the user."""
    caller = cookie_caller()
    check_password_change(caller.username)
    user = change_password(caller, load_body(password_change_schema)["password"])
    return login_response_schema.dump({"user": user})


def reset_token(caller: Identity) -> dict:
    """Replace the caller's API token under their lock; {"user", "token"} with the new token.

    The credential the caller came with is checked again under the lock: of two resets with
    the same token, the second is refused (401) instead of replacing the first one's token.
    """
    token, _ = presented_credentials()
    new_token = credentials.new_token()
    with write_transaction():
        username = models.lock_user(caller.user_id)
        still_valid = (models.api_token_is(caller.user_id, token) if token is not None
                       else models.session_is_live(caller.session_id))
        if username is None or not still_valid:
            raise Unauthorized(INVALID_SESSION)
        models.set_api_token(caller.user_id, new_token)
    security_event("token.reset", user=username, userId=caller.user_id, bySession=caller.session_id,
                   byToken=token is not None)
    return {"user": {"id": caller.user_id, "username": username}, "token": new_token}


def cookie_caller() -> Identity:
    """The caller, who must come with their own live session cookie (a token beside it must be
    that same user's); 401 otherwise. A token alone cannot take over an account's password."""
    caller = identify_caller()
    if caller.session_id is None:
        security_event("password.denied", user=caller.username, userId=caller.user_id, reason="no session cookie")
        raise Unauthorized(COOKIE_ONLY)
    return caller


def check_new_password(username: str, password: str) -> None:
    """400 naming the first rule a new password breaks: 8 to 1024 characters, no NUL, valid
    Unicode (the schema's rules), and not the username in any case."""
    errors = password_change_schema.validate({"password": password})
    if errors:
        raise BadRequest(describe_errors(errors))
    if password.casefold() == username.casefold():
        raise BadRequest(SAME_AS_USERNAME)


def change_password(caller: Identity, password: str) -> dict:
    """Set the caller's new password and end every other session of theirs, in one transaction;
    the session the caller came with stays. Returns {"id", "username"}."""
    check_new_password(caller.username, password)
    password_hash = credentials.hash_password(password)  # slow: before the write lock, not under it
    with write_transaction():
        username = models.lock_user(caller.user_id)
        if username is None or not models.session_is_live(caller.session_id):
            raise Unauthorized(INVALID_SESSION)  # logged out or revoked meanwhile: changes nothing
        models.set_password_hash(caller.user_id, password_hash)
        revoked = revoke_locked(caller.user_id, username, None, keep=caller.session_id, reason="password")
    security_event("password.changed", user=username, userId=caller.user_id, bySession=caller.session_id,
                   revoked=revoked)
    return {"id": caller.user_id, "username": username}


def set_password(user: models.User, password: str) -> list[str]:
    """The operator's reset (flask set-password): a new password, and every session of the user
    ended, the attacker's with the rest. Returns the ended sessions' ids."""
    check_new_password(user.username, password)
    password_hash = credentials.hash_password(password)
    with write_transaction():
        models.lock_user(user.id)
        models.set_password_hash(user.id, password_hash)
        revoked = revoke_locked(user.id, user.username, None, keep=None, reason="password")
    security_event("password.changed", user=user.username, userId=user.id, bySession=None, revoked=revoked,
                   address="cli")
    return revoked
