"""What a caller may do with sessions: list, revoke, log in, log out."""

from flask import current_app, has_request_context, request
from werkzeug.exceptions import BadRequest, Forbidden, Unauthorized

import models
from zipline_sessions.activity import events, idle, last_seen
from zipline_sessions.auth import accounts, login_checks, reads
from zipline_sessions.auth.caller import Caller, InvalidCredential
from zipline_sessions.devices import known
from zipline_sessions.devices.fingerprint import network_of
from zipline_sessions.security import credentials
from zipline_sessions.security.security_log import security_event
from zipline_sessions.storage.database import write_transaction

# Each login also deletes up to this many expired sessions: the table stays clean
# without a scheduler, and no request ever waits on a large purge.
PURGE_BATCH = 100


def session_list(caller: Caller, rows: list | None = None) -> dict:
    """{current, other} for the caller, as the contract shows it (from `rows` when given):
    rows whose first columns are a Session's on the wire, the id first."""
    rows = caller.sessions if rows is None else rows
    current, other = None, []
    for row in rows:
        if row[0] == caller.session_id:
            current = row
        else:
            other.append(row)
    return {"current": current, "other": other}


def revoke(caller: Caller, body: dict) -> dict:
    """Revoke body["sessionId"], or every session but the caller's when body["all"];
    returns the updated list."""
    target = revocation_target(body, keep=caller.session_id)
    with write_transaction():
        username = accounts.lock_user(caller.user_id)
        if username is None or (caller.session_id is not None and not models.session_is_live(caller.session_id)):
            # Revoked by a concurrent request: a revoked session revokes nothing.
            raise InvalidCredential()
        revoked = revoke_locked(caller.user_id, username, target, keep=caller.session_id, reason="user")
    security_event("sessions.revoked", user=username, userId=caller.user_id, bySession=caller.session_id,
                   revoked=revoked)
    return session_list(caller, reads.list_sessions(caller.user_id, caller.activity_fields))


def revocation_target(body: dict, keep: str | None) -> str | None:
    """The session id a valid revoke body names, or None for {"all": true}; 400 when it names
    `keep`, the caller's own session (which only logout ends)."""
    target = body.get("sessionId") if body.get("all") is not True else None
    if target is not None and target == keep:
        raise BadRequest("Cannot delete current session, use log out instead.")
    return target


def revoke_locked(user_id: int, username: str, target: str | None, keep: str | None, reason: str) -> list[str]:
    """Inside a write transaction holding the user's lock (accounts.lock_user): revoke the user's
    session `target`, or all of them but `keep` when target is None; the revoked ids. Each one
    is a session.revoked event for `reason` (events.REASONS)."""
    if target is None:
        revoked = models.revoke_other_sessions(user_id, keep=keep)
    else:
        revoked = [models.revoke_session(user_id, target)]
        if revoked[0] is None:
            raise BadRequest("Session not found in logged in sessions")
    events.record_many(events.REVOKED, user_id, username, revoked, reason=reason)
    return [row.id for row in revoked]


def log_in(username: str, password: str, user_agent: str | None,
           presented: str | None = None) -> tuple[models.User, str]:
    """Check the credentials and open a session; returns the user and the session token.

    `presented` is the session cookie the browser sent: if it names a session of this same
    user, that session ends as the new one opens (rotation: one browser, one live session).
    """
    user = accounts.find_user_by_name(username)
    stored_hash = user.password_hash if user else None
    if not credentials.password_matches(stored_hash, password):
        security_event("login.failure", user=username)
        # One answer for an unknown user and a wrong password.
        raise Unauthorized("Invalid username or password")
    # Hashed before the transaction: the write lock is not held while a hash runs.
    new_hash = credentials.hash_password(password) if credentials.needs_rehash(stored_hash) else None
    config = current_app.config
    seen = last_seen.current()
    address = seen.address()
    location = current_app.extensions["locate"](address) if seen.recorded else None
    # SESSIONS_IP_MODE=off keeps nothing of where: a device is then its client and kind alone.
    network = network_of(request.remote_addr) if has_request_context() and config["IP_MODE"] != "off" else ""
    with write_transaction():
        accounts.lock_user(user.id)  # PostgreSQL: this user's logins count and cap one at a time
        replaced = models.end_user_session_by_token(user.id, presented) if presented else None
        events.record(events.REVOKED, user.id, user.username, replaced, reason="login")
        refuse_beyond_cap(user, rotated=replaced is not None)  # rolls the rotation back too
        opened = models.open_session(user.id, user_agent, config["TTL_SECONDS"], seen=seen.recorded,
                                     ip=address, location=location, network=network)
        new_device = not login_checks.device_is_known(user.id, opened.fingerprint, opened=opened.id)
        events.record(events.CREATED, user.id, user.username, opened, extra={"newDevice": new_device})
        ended = login_checks.end_oldest_sessions(user.id, keep=opened.id, limit=config["MAX_PER_USER"])
        events.record_many(events.REVOKED, user.id, user.username, ended, reason="cap")
        rehashed = new_hash is not None and accounts.replace_password_hash(user.id, stored_hash, new_hash)
        purged = len(purge_expired(PURGE_BATCH))
    security_event("login.success", user=user.username, userId=user.id, sessionId=opened.id,
                   client=opened.client, device=opened.device)
    if new_device:
        security_event("login.new_device", user=user.username, userId=user.id, sessionId=opened.id,
                       client=opened.client, device=opened.device, location=opened.location)
    if replaced:
        security_event("login.rotated", user=user.username, userId=user.id, ended=replaced.id, sessionId=opened.id)
    if ended:
        security_event("sessions.capped", user=user.username, userId=user.id, limit=config["MAX_PER_USER"],
                       ended=[row.id for row in ended])
    if rehashed:
        security_event("password.rehashed", user=user.username, userId=user.id)
    if purged:
        security_event("sessions.purged", count=purged)
    return user, opened.token


def refuse_beyond_cap(user: models.User, rotated: bool) -> None:
    """Inside the login's write transaction, under the user's lock: with
    SESSIONS_MAX_PER_USER_POLICY=refuse, 403 when the user already has the cap's number of live
    sessions. A login that replaced the browser's own live session (`rotated`) is never refused."""
    config = current_app.config
    limit = config["MAX_PER_USER"]
    if config["MAX_PER_USER_POLICY"] != "refuse" or rotated or login_checks.count_live_sessions(user.id) < limit:
        return
    security_event("login.refused", user=user.username, userId=user.id, limit=limit)
    raise Forbidden(f"Session limit reached: at most {limit} live sessions per user. "
                    "Log out of one, or revoke one, before logging in again.")


def purge_expired(limit: int | None) -> list:
    """Inside a write transaction: delete expired sessions, past their lifetime and then idle
    ones (at most `limit`), each a session.expired event, and forget up to as many devices unused
    for 90 days; the ended rows."""
    purged = models.purge_expired(limit=limit)
    events.record_expired(purged, "ttl")
    idle_ones = idle.purge_idle(None if limit is None else limit - len(purged))
    events.record_expired(idle_ones, "idle")
    known.purge_stale(limit)
    return purged + idle_ones


def log_out(session) -> None:
    """End the session the cookie names."""
    with write_transaction():
        ended = models.end_session(session.id)
        if ended is not None:
            events.record(events.ENDED, ended.user_id, None, ended)
    security_event("logout", userId=session.user_id, sessionId=session.id)
