"""Login limits: per (username, client address), per address, and a per-username backstop.

Each attempt is counted before its password is checked, against each key in that order,
until one refuses it: an attempt refused for its (username, address) never reaches the
address's or the username's count, so one address cannot use up a username's backstop.
Counts live in the database (models.LoginAttempt) unless SESSIONS_RATELIMIT_STORAGE_URL
names a `limits` storage (Redis); either way every worker counts together and a restart
forgets nothing. Password changes are limited by the same settings, counted apart from
logins. Only the login and password-change views call in here: no other request pays.
"""

import hashlib
import ipaddress
import json
import math
import time
from datetime import timedelta
from typing import NamedTuple

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import HTTPException, ServiceUnavailable, TooManyRequests

from schemas import request_json
from zipline_sessions.config.checks import rate_limit_is_off
from zipline_sessions.security import attempts
from zipline_sessions.security.security_log import security_event
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import write_transaction

TOO_MANY = "Too many login attempts, try again later."
TOO_MANY_PASSWORD_CHANGES = "Too many password changes, try again later."
STORAGE_DOWN = "Login limit storage unavailable"
# Each counted attempt also deletes up to this many counters whose window is over.
PURGE_BATCH = 100
# A Redis that hangs makes a login fail (503) after this long, not hang with it.
REDIS_TIMEOUTS = {"socket_connect_timeout": 2, "socket_timeout": 2}
# The keys, in the order an attempt is counted, and the setting that limits each.
KEYS = (("username+address", "LOGIN_RATE_LIMIT"), ("address", "LOGIN_ADDRESS_RATE_LIMIT"),
        ("username", "LOGIN_USERNAME_RATE_LIMIT"))


class Check(NamedTuple):
    name: str  # which key: username+address, address or username
    setting: str  # the setting's text, for the security event
    item: RateLimitItem
    digest: str  # SHA-256 hex of the limit and the key's values: bounded, whatever a client sends


class Refusal(NamedTuple):
    check: Check
    wait: float  # seconds until that key's window ends


class DatabaseCounter:
    """Counts in the service's database: one short write transaction per attempt."""

    def take(self, checks: list[Check]) -> Refusal | None:
        with write_transaction():
            refusal = None
            for check in checks:
                window = timedelta(seconds=check.item.get_expiry())
                resets_at = attempts.count_login_attempt(check.digest, check.item.amount, window)
                if resets_at is not None:
                    refusal = Refusal(check, (resets_at - clock.utcnow()).total_seconds())
                    break
            attempts.purge_stale_login_attempts(PURGE_BATCH)
        return refusal

    def problem(self) -> str | None:
        return None  # the database: /api/health checks it already


class StorageCounter:
    """Counts in a `limits` storage (Redis; memory:// is per process): fixed windows that
    start at a key's first attempt (the key is created with its expiry)."""

    def __init__(self, url: str, prefix: str):
        options = REDIS_TIMEOUTS if url.partition("://")[0] in ("redis", "rediss", "redis+unix") else {}
        self.storage = storage_from_string(url, wrap_exceptions=True, **options)
        self.strategy = FixedWindowRateLimiter(self.storage)
        self.prefix = prefix

    def take(self, checks: list[Check]) -> Refusal | None:
        for check in checks:
            if not self.strategy.hit(check.item, self.prefix, check.digest):
                stats = self.strategy.get_window_stats(check.item, self.prefix, check.digest)
                return Refusal(check, stats.reset_time - time.time())
        return None

    def problem(self) -> str | None:
        return None if self.storage.check() else STORAGE_DOWN


class LoginLimiter:
    """The configured limits of one app, and where they count."""

    def __init__(self, config):
        self.keys = [(name, config[setting], parse_many(config[setting])) for name, setting in KEYS
                     if not rate_limit_is_off(config[setting])]
        url = config["RATELIMIT_STORAGE_URL"]
        self.counter = StorageCounter(url, config["RATELIMIT_KEY_PREFIX"]) if url else DatabaseCounter()

    def checks(self, username: str, address: str, action: str = "login") -> list[Check]:
        """The checks of one attempt at `action`; each action counts apart (a login's keys are
        as they always were)."""
        values = {"username+address": [username, address], "address": [address], "username": [username]}
        scope = [] if action == "login" else [action]
        return [Check(name, setting, item, _digest(item, name, [*scope, *values[name]]))
                for name, setting, items in self.keys for item in items]


def init_rate_limits(app: Flask) -> None:
    """Give this app its login limiter, unless SESSIONS_LOGIN_RATE_LIMIT is off."""
    if not rate_limit_is_off(app.config["LOGIN_RATE_LIMIT"]):
        app.extensions["login_limiter"] = LoginLimiter(app.config)


def check_login_attempt(username: str | None = None) -> None:
    """Count this login attempt at `username` (None: the one the JSON body names): 429 when a
    key is over its limit, 503 when the count cannot be kept."""
    count_attempt("login", login_username() if username is None else username, TOO_MANY)


def check_password_change(username: str) -> None:
    """Count a password change by `username` as a login attempt is counted (same limits, its own
    counts): 429 when a key is over its limit, 503 when the count cannot be kept."""
    count_attempt("password", username, TOO_MANY_PASSWORD_CHANGES)


def count_attempt(action: str, username: str, too_many: str) -> None:
    limiter = current_app.extensions.get("login_limiter")
    if limiter is None:
        return
    try:
        refusal = limiter.counter.take(limiter.checks(username, client_address(request.remote_addr), action))
    except StorageError as error:
        # Fail closed: without a count there is no limit, so no password is checked or hashed.
        current_app.logger.error("%s: %s", STORAGE_DOWN, error)
        raise ServiceUnavailable(STORAGE_DOWN) from None
    if refusal is not None:
        security_event(f"{action}.rate_limited", user=username, key=refusal.check.name, limit=refusal.check.setting)
        raise TooManyRequests(too_many, retry_after=max(1, math.ceil(refusal.wait)))


def limit_storage_problem() -> str | None:
    """Why login attempts cannot be counted (the configured storage does not answer), or None."""
    limiter = current_app.extensions.get("login_limiter")
    return None if limiter is None else limiter.counter.problem()


def client_address(address: str | None) -> str:
    """The address a client is counted by: an IPv6 client by its /64, which one host usually holds whole."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or ""
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


def login_username() -> str:
    """The username a login attempt names ("" for a body the view will refuse anyway)."""
    try:
        body = request_json()
    except HTTPException:
        body = None
    username = body.get("username") if isinstance(body, dict) else None
    return username if isinstance(username, str) else ""


def _digest(item: RateLimitItem, name: str, values: list[str]) -> str:
    text = json.dumps([name, item.amount, item.multiples, item.GRANULARITY.name, *values])
    return hashlib.sha256(text.encode()).hexdigest()
