"""Login limits: per (username, client address), per address, and a per-username backstop.

Each attempt is counted before its password is checked, against each key in that order,
until one refuses it: an attempt refused for its (username, address) never reaches the
address's or the username's count, so one address cannot use up a username's backstop.
Counts live in the database (attempts.py, LoginAttempt) unless SESSIONS_RATELIMIT_STORAGE_URL
names a `limits` storage (Redis); either way every worker counts together and a restart
forgets nothing. A check of the current password (a password change, a token reset by cookie)
is a login attempt, counted with the logins. Token resets are also counted per user
(SESSIONS_TOKEN_RESET_RATE_LIMIT), and one user's are spaced a second apart. Only those views
call in here: no other request pays.
"""

import hashlib
import ipaddress
import json
import math
import time
from datetime import datetime, timedelta
from typing import NamedTuple

from flask import Flask, current_app, request
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter
from werkzeug.exceptions import HTTPException, ServiceUnavailable, TooManyRequests

from schemas import request_json
from zipline_sessions.config.checks import rate_limit_is_off
from zipline_sessions.security import attempts, credentials
from zipline_sessions.security.security_log import security_event
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import write_transaction

TOO_MANY = "Too many login attempts, try again later."
TOO_MANY_TOKEN_RESETS = "Too many token resets, try again later."
TOKEN_JUST_RESET = "The API token was reset less than a second ago, try again in a second."
# Of one user's token resets, at most one succeeds in this long (Zipline: one a second too).
TOKEN_RESET_SPACING = timedelta(seconds=1)
# How long the time of a user's last reset is kept: longer than any request takes to reach its lock.
MARK_KEPT = timedelta(minutes=5)
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
    repeated: bool = False  # the key was refused before in this window (its security event was logged then)


class DatabaseCounter:
    """Counts in the service's database: one short write transaction per attempt."""

    def take(self, checks: list[Check]) -> Refusal | None:
        # A flood on a key already over its limit is refused by a read, not a write each: the
        # write would refuse it at the first key and change no count.
        first = checks[0] if checks else None
        if first is not None and (resets_at := attempts.refused_until(first.digest, first.item.amount)):
            return Refusal(first, (resets_at - clock.utcnow()).total_seconds(), repeated=True)
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
        self.counter = make_counter(config)

    def checks(self, username: str, address: str) -> list[Check]:
        """The checks of one attempt."""
        values = {"username+address": [username, address], "address": [address], "username": [username]}
        return [Check(name, setting, item, _digest(item, name, values[name]))
                for name, setting, items in self.keys for item in items]


class TokenResetLimiter:
    """SESSIONS_TOKEN_RESET_RATE_LIMIT: one user's token resets, from whatever address."""

    def __init__(self, config):
        self.setting = config["TOKEN_RESET_RATE_LIMIT"]
        self.items = parse_many(self.setting)
        self.counter = make_counter(config)

    def checks(self, user_id: int) -> list[Check]:
        return [Check("user", self.setting, item, _digest(item, "user", ["token-reset", str(user_id)]))
                for item in self.items]


def make_counter(config) -> DatabaseCounter | StorageCounter:
    url = config["RATELIMIT_STORAGE_URL"]
    return StorageCounter(url, config["RATELIMIT_KEY_PREFIX"]) if url else DatabaseCounter()


def init_rate_limits(app: Flask) -> None:
    """Give this app its login limiter and its token-reset limiter, each unless its setting is off."""
    if not rate_limit_is_off(app.config["LOGIN_RATE_LIMIT"]):
        app.extensions["login_limiter"] = LoginLimiter(app.config)
    if not rate_limit_is_off(app.config["TOKEN_RESET_RATE_LIMIT"]):
        app.extensions["token_reset_limiter"] = TokenResetLimiter(app.config)


def check_login_attempt(username: str | None = None) -> None:
    """Count this login attempt at `username` (None: the one the JSON body names): 429 when a
    key is over its limit, 503 when the count cannot be kept."""
    count_attempt(login_username() if username is None else username, "login")


def check_password_attempt(username: str, purpose: str) -> None:
    """Count a check of `username`'s current password (`purpose`: password or token) as a login
    attempt, with the logins: guessing it here uses up the same attempts as guessing at login."""
    count_attempt(username, purpose)


def count_attempt(username: str, purpose: str) -> None:
    credentials.refuse_when_busy()  # 503 at once when no hash could start: nothing counted or read
    limiter = current_app.extensions.get("login_limiter")
    if limiter is not None:
        checks = limiter.checks(username, client_address(request.remote_addr))
        _take(limiter.counter, checks, username, f"{purpose}.rate_limited", TOO_MANY)


def check_token_reset(user_id: int, username: str) -> None:
    """Count a token reset of the user: 429 over SESSIONS_TOKEN_RESET_RATE_LIMIT, 503 when the
    count cannot be kept."""
    limiter = current_app.extensions.get("token_reset_limiter")
    if limiter is not None:
        _take(limiter.counter, limiter.checks(user_id), username, "token.rate_limited", TOO_MANY_TOKEN_RESETS)


def _take(counter, checks: list[Check], username: str, event: str, too_many: str) -> None:
    try:
        refusal = counter.take(checks)
    except StorageError as error:
        # Fail closed: without a count there is no limit, so no password is checked or hashed.
        current_app.logger.error("%s: %s", STORAGE_DOWN, error)
        raise ServiceUnavailable(STORAGE_DOWN) from None
    if refusal is not None:
        if not refusal.repeated:  # one line per key and window, not one per request of a flood
            security_event(event, user=username, key=refusal.check.name, limit=refusal.check.setting)
        raise TooManyRequests(too_many, retry_after=max(1, math.ceil(refusal.wait)))


def space_token_resets(user_id: int, received_at: datetime) -> None:
    """Inside a token reset's write transaction, under the user's lock: 429 unless this reset was
    received (`received_at`) at least TOKEN_RESET_SPACING after the user's last successful reset
    was made. So no two resets that overlap in time can both succeed, however long each took to
    get here (a password check, a loaded machine), and no two succeed within a second. Kept in
    the database whatever the storage: the lock that puts the resets in order is there."""
    key = hashlib.sha256(json.dumps(["token-reset-made", user_id]).encode()).hexdigest()
    mark = attempts.read_mark(key)
    now = clock.utcnow()
    if mark is not None and received_at < mark - MARK_KEPT + TOKEN_RESET_SPACING:
        wait = (mark - MARK_KEPT + TOKEN_RESET_SPACING - now).total_seconds()
        raise TooManyRequests(TOKEN_JUST_RESET, retry_after=max(1, math.ceil(wait)))
    attempts.set_mark(key, now + MARK_KEPT)


def limit_storage_problem() -> str | None:
    """Why attempts cannot be counted (the configured storage does not answer), or None."""
    for name in ("login_limiter", "token_reset_limiter"):
        limiter = current_app.extensions.get(name)
        if limiter is not None:
            return limiter.counter.problem()
    return None


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
