"""Admins list and revoke any user's sessions: /api/admin/users/<username>/sessions."""

from typing import NamedTuple

from flask import Blueprint
from werkzeug.exceptions import Forbidden, NotFound

import models
from schemas import admin_session_list_schema, load_body, revoke_schema
from zipline_sessions.auth import accounts, reads, sessions
from zipline_sessions.auth.caller import Identity, InvalidCredential, identify_caller
from zipline_sessions.security.security_log import security_event
from zipline_sessions.storage.database import write_transaction

admin = Blueprint("admin", __name__, url_prefix="/api/admin")

# Zipline's own messages for these two.
ADMIN_ONLY = "Admin only"
USER_NOT_FOUND = "User not found"


class Target(NamedTuple):
    id: int
    username: str


# <path:...>: a username may hold a "/" (sent as %2F, decoded before routing).
@admin.get("/users/<path:username>/sessions")
def list_sessions_of(username):
    """Every live session of the user, oldest first (admins only)."""
    caller, target = admin_and_target(username)
    return admin_session_list_schema.dump(listing(caller, target))


@admin.delete("/users/<path:username>/sessions")
def revoke_sessions_of(username):
    """Revoke one session of the user, or all of them; answers the updated list (admins only)."""
    caller, target = admin_and_target(username)
    return admin_session_list_schema.dump(revoke(caller, target, load_body(revoke_schema)))


def admin_and_target(username: str) -> tuple[Identity, Target]:
    """The calling admin and the user they name: 401, then 403 "Admin only", then 404."""
    caller = identify_caller()
    if not caller.is_admin:
        security_event("admin.denied", user=caller.username, userId=caller.user_id,
                       target=username)
        raise Forbidden(ADMIN_ONLY)
    user = accounts.find_user_by_name(username)
    if user is None:
        raise NotFound(USER_NOT_FOUND)
    return caller, Target(user.id, user.username)


def listing(caller: Identity, target: Target) -> dict:
    """{"user", "sessions"}: the target and all their live sessions, oldest first."""
    security_event("admin.sessions.listed", admin=caller.username, adminId=caller.user_id,
                   user=target.username, userId=target.id)
    return {"user": target._asdict(), "sessions": reads.list_sessions(target.id, fields=True)}


def revoke(caller: Identity, target: Target, body: dict) -> dict:
    """Revoke body["sessionId"] of the target, or all their sessions; the updated listing.

    An admin naming themselves keeps the session they call from, as on /api/user/sessions.
    """
    keep = caller.session_id if target.id == caller.user_id else None
    session_id = sessions.revocation_target(body, keep=keep)
    with write_transaction():
        if accounts.lock_user(target.id) is None:
            raise NotFound(USER_NOT_FOUND)
        # Checked again under the lock: a revoked session or a withdrawn admin revokes nothing.
        if caller.session_id is not None and not models.session_is_live(caller.session_id):
            raise InvalidCredential()
        if not accounts.user_is_admin(caller.user_id):
            raise Forbidden(ADMIN_ONLY)
        revoked = sessions.revoke_locked(target.id, target.username, session_id, keep=keep, reason="admin")
    security_event("admin.sessions.revoked", admin=caller.username, adminId=caller.user_id,
                   bySession=caller.session_id, user=target.username, userId=target.id, revoked=revoked)
    return {"user": target._asdict(), "sessions": reads.list_sessions(target.id, fields=True)}
