"""Login rate limiting (Flask-Limiter), per client address and per username."""

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.exceptions import HTTPException

from schemas import request_json
from security_log import security_event

TOO_MANY = "Too many login attempts, try again later."


def login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def login_username() -> str:
    """The username a login attempt names ("" for a body the view will refuse anyway)."""
    try:
        body = request_json()
    except HTTPException:
        body = None
    username = body.get("username") if isinstance(body, dict) else None
    return "username:" + (username if isinstance(username, str) else "")


def log_breach(limit) -> None:
    """A refused login attempt is a security event too."""
    security_event("login.rate_limited", user=login_username().removeprefix("username:"),
                   limit=str(limit.limit))


def init_rate_limits(app: Flask, endpoint: str) -> Limiter:
    """Give this app its own limiter (no state shared between apps) and limit `endpoint`."""
    limiter = Limiter(key_func=get_remote_address, app=app)
    view = app.view_functions[endpoint]
    view = limiter.limit(login_limit, key_func=login_username, scope="login-username", error_message=TOO_MANY,
                         on_breach=log_breach)(view)
    view = limiter.limit(login_limit, key_func=get_remote_address, scope="login-address", error_message=TOO_MANY,
                         on_breach=log_breach)(view)
    app.view_functions[endpoint] = view
    return limiter
