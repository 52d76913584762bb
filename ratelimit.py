"""Login rate limiting, per client address and per username, with the `limits` library.

`limits` is the counting engine under Flask-Limiter. It is used directly because
Flask-Limiter hooks into every request of the app, limited or not, and its hooks cost a
GET more than its database work (they added over a third to a GET's time; README,
"Benchmark"). Here the login view alone asks `check_login_attempt()`; no other request
pays anything.
"""

import math
import time

from flask import Flask, current_app, request
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import HTTPException, TooManyRequests

from schemas import request_json
from security_log import security_event
from settings import rate_limit_is_off

TOO_MANY = "Too many login attempts, try again later."


class LoginLimiter:
    """Counts login attempts for one app: its own storage (memory:// is per process)."""

    def __init__(self, limit: str, storage_url: str, prefix: str):
        self.limits = parse_many(limit)
        self.strategy = FixedWindowRateLimiter(storage_from_string(storage_url))
        self.prefix = prefix

    def hit(self, scope: str, key: str) -> float | None:
        """Count one attempt for `key`; None when within every limit, else seconds to wait."""
        waits = [self._wait(limit, scope, key) for limit in self.limits
                 if not self.strategy.hit(limit, self.prefix, scope, key)]
        return max(waits) if waits else None

    def _wait(self, limit, scope: str, key: str) -> float:
        stats = self.strategy.get_window_stats(limit, self.prefix, scope, key)
        return stats.reset_time - time.time()


def init_rate_limits(app: Flask) -> None:
    """Give this app its login limiter, unless SESSIONS_LOGIN_RATE_LIMIT is off."""
    config = app.config
    if not rate_limit_is_off(config["LOGIN_RATE_LIMIT"]):
        app.extensions["login_limiter"] = LoginLimiter(
            config["LOGIN_RATE_LIMIT"], config["RATELIMIT_STORAGE_URL"], config["RATELIMIT_KEY_PREFIX"])


def check_login_attempt() -> None:
    """Count this login attempt by client address, then by username: 429 over either limit.

    An address over its limit is refused before its attempt counts against the username.
    """
    limiter = current_app.extensions.get("login_limiter")
    if limiter is None:
        return
    username = login_username()
    for scope, key in (("login-address", request.remote_addr or ""), ("login-username", username)):
        wait = limiter.hit(scope, key)
        if wait is not None:
            security_event("login.rate_limited", user=username, limit=current_app.config["LOGIN_RATE_LIMIT"])
            raise TooManyRequests(TOO_MANY, retry_after=max(1, math.ceil(wait)))


def login_username() -> str:
    """The username a login attempt names ("" for a body the view will refuse anyway)."""
    try:
        body = request_json()
    except HTTPException:
        body = None
    username = body.get("username") if isinstance(body, dict) else None
    return username if isinstance(username, str) else ""
