"""What an account is reached by, changed by its owner or the operator: its username, its password
(with the current one; every other session ends and the caller's gets a new token) and its API
token (a new one, or none)."""

from flask import current_app
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import BadRequest, Unauthorized

import models
from schemas import describe_errors
from zipline_sessions.activity import events
from zipline_sessions.auth import accounts
from zipline_sessions.auth.caller import Identity, InvalidCredential
from zipline_sessions.auth.sessions import revoke_locked
from zipline_sessions.security import credentials
from zipline_sessions.security.ratelimit import check_password_attempt, check_token_reset, space_token_resets
from zipline_sessions.security.security_log import security_event
from zipline_sessions.sidecar.user_schemas import user_update_schema
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import write_transaction

COOKIE_ONLY = "Only a session cookie can change the password: log in first."
SAME_AS_USERNAME = "password: Must not be the username."
USERNAME_TAKEN = "Username already exists"
NOTHING_TO_CHANGE = "Nothing to change: give username, or password with currentPassword."
# Zipline's messages (1067 and 1066 in its user/index.ts); the token's is ours.
CURRENT_PASSWORD_MISSING = "Current password is required to set a new password"
CURRENT_PASSWORD_MISSING_FOR_TOKEN = "Current password is required to reset the API token"
CURRENT_PASSWORD_WRONG = "Current password is incorrect"


def update_account(caller: Identity, body: dict, empty_is_fine: bool) -> tuple[str, str | None]:
    """Apply a PATCH /api/user body (user_update_schema's) in one transaction; the username after
    it, and the caller's new session token when the password changed (for the cookie).

    Zipline's order: the new name (400 taken), then the password (a cookie, the current one,
    the rules). A body with nothing to change answers the user as is when `empty_is_fine`
    (Zipline's settings page sends {} when nothing changed), else 400.
    """
    username, password = body.get("username"), body.get("password")
    if password is not None and caller.session_id is None:
        security_event("password.denied", user=caller.username, userId=caller.user_id, reason="no session cookie")
        raise Unauthorized(COOKIE_ONLY)
    if username is not None and accounts.find_user_by_name(username) is not None:
        raise BadRequest(USERNAME_TAKEN)  # the caller's own name too, as in Zipline
    if username is None and password is None:
        if empty_is_fine:
            return caller.username, None
        raise BadRequest(NOTHING_TO_CHANGE)
    password_hash = None
    if password is not None:
        check_new_password(username or caller.username, password)
        confirm_password(caller.user_id, caller.username, body.get("currentPassword"), CURRENT_PASSWORD_MISSING,
                         "password")
        password_hash = credentials.hash_password(password)  # slow: before the write lock, not under it
    return apply_change(caller, username, password_hash)


def apply_change(caller: Identity, new_name: str | None, password_hash: str | None) -> tuple[str, str | None]:
    """The change, under the user's lock, once the caller's session is found still live."""
    token = credentials.new_token() if password_hash is not None else None
    revoked = []
    try:
        with write_transaction():
            old_name = accounts.lock_user(caller.user_id)
            if old_name is None or (caller.session_id is not None and not models.session_is_live(caller.session_id)):
                raise InvalidCredential()  # logged out or revoked meanwhile: changes nothing
            if new_name is not None:
                if accounts.find_user_by_name(new_name) is not None:
                    raise BadRequest(USERNAME_TAKEN)
                accounts.rename_user(caller.user_id, new_name)
                events.record_renamed(caller.user_id, old_name, new_name)
            username = new_name or old_name
            if token is not None:
                accounts.set_password_hash(caller.user_id, password_hash)
                revoked = revoke_locked(caller.user_id, username, None, keep=caller.session_id, reason="password")
                models.rotate_session_token(caller.session_id, token, current_app.config["TTL_SECONDS"])
    except IntegrityError:  # PostgreSQL: another rename to this name committed first
        raise BadRequest(USERNAME_TAKEN) from None
    if new_name is not None:
        security_event("user.renamed", user=username, userId=caller.user_id, previous=old_name,
                       bySession=caller.session_id)
    if token is not None:
        security_event("password.changed", user=username, userId=caller.user_id, bySession=caller.session_id,
                       revoked=revoked, rotated=True)
    return username, token


def check_new_password(username: str, password: str) -> None:
    """400 naming the first rule a new password breaks: 8 to 1024 characters, no NUL, valid
    Unicode (the schema's rules), and not the username in any case."""
    errors = user_update_schema.validate({"password": password})
    if errors:
        raise BadRequest(describe_errors(errors))
    if password.casefold() == username.casefold():
        raise BadRequest(SAME_AS_USERNAME)


def confirm_password(user_id: int, username: str, current: str | None, missing: str, purpose: str) -> None:
    """400 unless `current` is the user's password, checked as a login checks one (the same cost,
    counted with the logins: 429 past the login limits). A user without a password has none to
    give, and none is asked (as in Zipline, for an account without one)."""
    stored_hash = accounts.password_hash_of(user_id)
    if stored_hash is None:
        return
    if not current:
        raise BadRequest(missing)
    check_password_attempt(username, purpose)
    if not credentials.password_matches(stored_hash, current):
        security_event(f"{purpose}.denied", user=username, userId=user_id, reason="wrong current password")
        raise BadRequest(CURRENT_PASSWORD_WRONG)


def reset_token(caller: Identity, token: str | None, current: str | None, ask_password: bool) -> tuple[str, str]:
    """Replace the caller's API token under their lock; (username, new token).

    `token`: the API token the caller came with (None: a cookie). With `ask_password`, the
    current password must come too. Counted first by the user's token-reset limit (429). Under the
    lock, the credential is checked again (of two resets with one token, the second is 401), and
    the reset must have been received a second after the user's last one was made (429
    otherwise): of resets sent at once, or within a second, one answers a token.
    """
    received_at = clock.utcnow()
    check_token_reset(caller.user_id, caller.username)
    if ask_password:
        confirm_password(caller.user_id, caller.username, current, CURRENT_PASSWORD_MISSING_FOR_TOKEN, "token")
    new_token = credentials.new_token()
    with write_transaction():
        username = accounts.lock_user(caller.user_id)
        still_valid = (accounts.api_token_is(caller.user_id, token) if token is not None
                       else models.session_is_live(caller.session_id))
        if username is None or not still_valid:
            raise InvalidCredential()
        space_token_resets(caller.user_id, received_at)
        accounts.set_api_token(caller.user_id, new_token)
    security_event("token.reset", user=username, userId=caller.user_id, bySession=caller.session_id,
                   byToken=token is not None)
    return username, new_token


def set_password(user: models.User, password: str, keep_sessions: bool = False,
                 keep_token: bool = False) -> tuple[list[str], bool]:
    """The operator's reset (flask set-password): a new password, every session of the user ended
    and their API token revoked, the attacker's with the rest (unless kept). Returns the ended
    sessions' ids and whether a token was revoked."""
    check_new_password(user.username, password)
    password_hash = credentials.hash_password(password)
    with write_transaction():
        accounts.lock_user(user.id)
        accounts.set_password_hash(user.id, password_hash)
        revoked = [] if keep_sessions else revoke_locked(user.id, user.username, None, keep=None, reason="password")
        token_revoked = not keep_token and accounts.clear_api_token(user.id)
    security_event("password.changed", user=user.username, userId=user.id, bySession=None, revoked=revoked,
                   tokenRevoked=token_revoked, address="cli")
    return revoked, token_revoked


def revoke_token(user: models.User) -> bool:
    """The operator's revocation (flask revoke-token): the user has no API token from now on;
    whether they had one. A session cookie can make a new one (PATCH /api/user/token)."""
    with write_transaction():
        accounts.lock_user(user.id)
        revoked = accounts.clear_api_token(user.id)
    security_event("token.revoked", user=user.username, userId=user.id, hadToken=revoked, address="cli")
    return revoked
