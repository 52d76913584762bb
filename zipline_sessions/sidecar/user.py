"""The user routes of Zipline's clients: who am I (GET /api/user), the profile update (PATCH
/api/user: a new username, a new password), the API token (PATCH /api/user/token); and the user
object each answers, in the configured profile (README, "Zipline compatibility")."""

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import NotFound

from schemas import load_body
from zipline_sessions.auth import accounts, reads
from zipline_sessions.auth.caller import (
    InvalidCredential,
    identify_caller,
    presented_credentials,
    set_session_cookie,
)
from zipline_sessions.security.crosssite import refuse_cross_site
from zipline_sessions.sidecar import account
from zipline_sessions.sidecar.user_schemas import token_reset_schema, user_update_schema, zipline_user_schema
from zipline_sessions.storage.timestamps import format_timestamp

user_routes = Blueprint("user", __name__, url_prefix="/api")

# Zipline's GET /api/user/token shows the stored token; here only its hash is stored.
TOKEN_NOT_SHOWN = ("The API token is stored only as a hash and cannot be shown again: "
                   "PATCH /api/user/token issues a new one.")


@user_routes.get("/user")
def who_am_i():
    """The caller's user object (a token or a session cookie, as on the sessions routes); never a token."""
    caller = identify_caller()
    return {"user": user_body(caller.user_id, caller.username)}


@user_routes.patch("/user")
def update_own_user():
    """Rename the caller, or set a new password with the current one (which ends every other
    session and gives the caller's a new cookie), or both."""
    refuse_cross_site("account change")
    caller = identify_caller()
    username, token = account.update_account(caller, load_body(user_update_schema), empty_is_fine=zipline_v4())
    response = jsonify({"user": user_body(caller.user_id, username)})
    if token is not None:
        set_session_cookie(response, token)
    return response


@user_routes.patch("/user/token")
def reset_api_token():
    """Issue the caller a new API token (shown this once); the old one is refused from now on."""
    refuse_cross_site("token reset")
    caller = identify_caller()
    token, _ = presented_credentials()
    body = token_reset_body()  # checked whoever sends one
    # A cookie alone must bring the current password too (not in Zipline, which asks for nothing).
    ask_password = token is None and not zipline_v4()
    username, new_token = account.reset_token(caller, token, body.get("currentPassword"), ask_password)
    return {"user": user_body(caller.user_id, username), "token": new_token}


@user_routes.get("/user/token")
def stored_api_token():
    """Always 404: the stored token cannot be shown, only replaced."""
    raise NotFound(TOKEN_NOT_SHOWN)


def zipline_v4() -> bool:
    return current_app.config["ERROR_PROFILE"] == "zipline-v4"


def token_reset_body() -> dict:
    """The token reset's JSON body; none at all reads as {} (the current password is then missing)."""
    if not request.content_length and not request.headers.get("Content-Type"):
        return {}
    return load_body(token_reset_schema)


def user_body(user_id: int, username: str) -> dict:
    """The user object of the profile: login's {"id", "username"}, or Zipline v4's."""
    if not zipline_v4():
        return {"id": user_id, "username": username}
    user = accounts.find_user(user_id)
    if user is None:
        raise InvalidCredential()  # deleted since the caller was identified
    created = format_timestamp(user.created_at)
    sessions = [{"id": row.id, "created_at": row.created_at, "ua": row.ua, "client": row.client,
                 "device": row.device, "userId": str(user_id)} for row in reads.list_sessions(user_id)]
    return zipline_user_schema.dump({
        "id": str(user_id), "username": user.username, "createdAt": created, "updatedAt": created,
        "role": "ADMIN" if user.is_admin else "USER", "view": {}, "avatar": None, "sessions": sessions,
        "oauthProviders": [], "totpEnabled": False, "passkeys": [], "quota": None})
