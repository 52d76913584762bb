"""Configuration: defaults, SESSIONS_* environment variables, and their checks."""

import difflib
import os

import click
from flask import Flask
from limits import parse_many
from limits.storage import SCHEMES

# Where the login limit can count: the `limits` library's synchronous storages.
STORAGE_SCHEMES = {scheme for scheme in SCHEMES if not scheme.startswith("async+")}


class ConfigError(click.ClickException):
    """A setting is wrong; the service refuses to start and says which, in one line.

    A ClickException, so that `flask --app app <command>` prints "Error: <message>" and no
    traceback when the app cannot be made.
    """


# Keys as they stand after the SESSIONS_ prefix; each one is in the README's table.
DEFAULTS = {
    "DATABASE_URL": None,  # None: sqlite file instance/sessions.db
    "COOKIE_NAME": "zipline_token",
    "COOKIE_SECURE": False,
    "COOKIE_SAMESITE": "Lax",  # Lax, Strict, or None (cross-site browser clients; needs COOKIE_SECURE)
    "TTL_SECONDS": 7 * 24 * 3600,
    # Login limits (README, "Login limits"): per (username, client address); off: none at all.
    "LOGIN_RATE_LIMIT": "10 per minute",
    "LOGIN_ADDRESS_RATE_LIMIT": "30 per minute",  # per client address, whatever the username
    "LOGIN_USERNAME_RATE_LIMIT": "1000 per hour",  # per username: the backstop against many addresses
    "RATELIMIT_STORAGE_URL": None,  # None: count in the database; redis://... to count in Redis
    "RATELIMIT_KEY_PREFIX": "zipline-sessions",  # keeps counts apart when services share a Redis
    "MAX_BODY_BYTES": 16 * 1024,
    "MAX_PER_USER": 100,  # live sessions per user; a login beyond it ends the user's oldest
    "HASH_CONCURRENCY": 1,  # password hashes computed at once per worker process (64 MiB each)
    "AUTO_MIGRATE": True,  # bring the schema to head at start; off: flask --app app db-upgrade
    "TRUSTED_PROXIES": 0,  # how many reverse proxies' X-Forwarded-For / -Proto to believe
    # The service's own origin (scheme://host[:port]) as browsers see it; None: the request's
    # scheme and Host. Behind a proxy that rewrites Host, set it (cross-site checks use it).
    "PUBLIC_ORIGIN": None,
    # Browser origins allowed to call the API with credentials (comma-separated); empty: none.
    "CORS_ORIGINS": "",
    # The shape of every error body: the contract's, or the one Zipline v4 sends (errors.py).
    "ERROR_PROFILE": "contract",
    # The server (serve.py runs Granian with these).
    "BIND": "127.0.0.1:8000",  # host:port; port 0 picks a free one
    "WORKERS": None,  # None: one worker process per core
    "THREADS": 4,  # Python threads per worker that run requests
    "LOG_LEVEL": "info",
    "ACCESS_LOG": "-",  # "-": stdout, "off", or a file path
    "READY_FILE": None,  # a path: serve.py writes the base URL there once the service answers
    # Test fixtures (README, "Use it in tests"): the /__test__/ routes, for loopback clients only.
    "TEST_CONTROL": False,
    "SEED_FILE": None,  # a seed file loaded at start into a database that has no users
    # Last activity (activity.py): written at most once per TOUCH_SECONDS per session; 0: not recorded.
    "TOUCH_SECONDS": 60,
    "IP_MODE": "full",  # full, truncate (IPv4 /24, IPv6 /48) or off: the address kept with the activity
    "ACTIVITY_FIELDS": False,  # true: Session objects also carry lastSeenAt and ip
    # Session events (events.py), POSTed to WEBHOOK_URL signed with WEBHOOK_SECRET; None: no events.
    "WEBHOOK_URL": None,
    "WEBHOOK_SECRET": None,
    "WEBHOOK_MAX_AGE": 24 * 3600,  # seconds an event is retried before it is dead
    "WEBHOOK_RETRY_BASE": 1.0,  # seconds before the first retry; doubles each time, up to 10 minutes
}

IP_MODES = ("full", "truncate", "off")
MIN_SECRET_LENGTH = 16
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
SAMESITE_VALUES = ("Lax", "Strict", "None")
ERROR_PROFILES = ("contract", "zipline-v4")


def load_settings(app: Flask, overrides: dict | None) -> None:
    """Fill app.config from DEFAULTS, then the environment, then `overrides` (tests)."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("SESSIONS")
    if overrides:
        app.config.update(overrides)
    config = app.config
    _check(config)
    if not config["DATABASE_URL"]:  # the folder is made with the file (database.prepare_sqlite_file)
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "sessions.db")
    config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"]
    # Database errors are logged; their SQL parameters (hashes, usernames) are not.
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {"hide_parameters": True}
    config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"]
    config["CORS_ORIGINS"] = parse_origins(config["CORS_ORIGINS"])
    config["COOKIE_SAMESITE"] = config["COOKIE_SAMESITE"].capitalize()  # lax -> Lax, as browsers spell it
    if config["WORKERS"] is None:
        config["WORKERS"] = os.cpu_count() or 1


# Variables of the test suite (tests/conftest.py), not of the service.
TEST_VARIABLE_PREFIX = "SESSIONS_TEST_"


def unknown_variables(environ) -> list[str]:
    """A warning line for each SESSIONS_* variable that is no setting (a typo such as
    SESSIONS_TTL), naming the nearest one that is."""
    known = [f"SESSIONS_{key}" for key in DEFAULTS]
    lines = []
    for name in sorted(environ):
        if name.startswith("SESSIONS_") and name not in known and not name.startswith(TEST_VARIABLE_PREFIX):
            nearest = difflib.get_close_matches(name, known, n=1, cutoff=0)[0]
            lines.append(f"{name} is not a setting and is ignored; did you mean {nearest}?")
    return lines


def _check(config) -> None:
    """Refuse to start on a setting that makes no sense, naming it."""
    for key in ("TTL_SECONDS", "MAX_BODY_BYTES", "MAX_PER_USER", "HASH_CONCURRENCY"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"SESSIONS_{key} must be a positive whole number, not {value!r}")
    for key in ("COOKIE_SECURE", "AUTO_MIGRATE", "TEST_CONTROL"):
        if not isinstance(config[key], bool):
            raise ConfigError(f"SESSIONS_{key} must be true or false, not {config[key]!r}")
    proxies = config["TRUSTED_PROXIES"]
    if isinstance(proxies, bool) or not isinstance(proxies, int) or proxies < 0:
        raise ConfigError(f"SESSIONS_TRUSTED_PROXIES must be a whole number (0 or more), not {proxies!r}")
    name = config["COOKIE_NAME"]
    if not isinstance(name, str) or not name or any(c in name for c in ' ;,="\t\r\n'):
        raise ConfigError(f"SESSIONS_COOKIE_NAME is not a valid cookie name: {name!r}")
    for key in ("LOGIN_RATE_LIMIT", "LOGIN_ADDRESS_RATE_LIMIT", "LOGIN_USERNAME_RATE_LIMIT"):
        limit = config[key]
        if not isinstance(limit, str) or not _valid_limit(limit):
            raise ConfigError(f"SESSIONS_{key} is not a rate limit such as '10 per minute' or 'off': {limit!r}")
    if not isinstance(config["RATELIMIT_KEY_PREFIX"], str):
        raise ConfigError(f"SESSIONS_RATELIMIT_KEY_PREFIX must be text, not {config['RATELIMIT_KEY_PREFIX']!r}")
    _check_server(config)
    _check_activity(config)
    _check_webhook(config)
    _check_origins(config)
    _check_browser(config)
    storage = config["RATELIMIT_STORAGE_URL"]
    if storage == "":
        config["RATELIMIT_STORAGE_URL"] = storage = None  # set but empty: the default, the database
    if storage is not None and (not isinstance(storage, str) or "://" not in storage
                                or storage.partition("://")[0] not in STORAGE_SCHEMES):
        raise ConfigError("SESSIONS_RATELIMIT_STORAGE_URL must be a storage URL such as redis://host "
                          f"(unset: the database), not {_without_password(storage)!r}")
    _check_fixture(config)


def _check_fixture(config) -> None:
    seed_file = config["SEED_FILE"]
    if seed_file == "":
        config["SEED_FILE"] = seed_file = None
    if seed_file is not None and not isinstance(seed_file, str):
        raise ConfigError(f"SESSIONS_SEED_FILE must be a file path, not {seed_file!r}")
    storage = config["RATELIMIT_STORAGE_URL"]
    if config["TEST_CONTROL"] and storage is not None and not rate_limit_is_off(config["LOGIN_RATE_LIMIT"]):
        # The test clock lives in the database; a count kept elsewhere could not follow it, nor be reset.
        raise ConfigError("SESSIONS_TEST_CONTROL=true cannot move the clock of login limits counted in "
                          f"SESSIONS_RATELIMIT_STORAGE_URL={_without_password(storage)}: unset "
                          "SESSIONS_RATELIMIT_STORAGE_URL (count in the database) or set "
                          "SESSIONS_LOGIN_RATE_LIMIT=off")


def _check_server(config) -> None:
    bind = config["BIND"]
    host, _, port = bind.rpartition(":") if isinstance(bind, str) else ("", "", "")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"SESSIONS_BIND must be host:port such as 127.0.0.1:8000 (port 0: any free port), "
                          f"not {bind!r}")
    for key in ("WORKERS", "THREADS"):
        value = config[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ConfigError(f"SESSIONS_{key} must be a positive whole number, not {value!r}")
    if config["LOG_LEVEL"] not in LOG_LEVELS:
        raise ConfigError(f"SESSIONS_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {config['LOG_LEVEL']!r}")
    ready = config["READY_FILE"]
    if ready is not None and (not isinstance(ready, str) or not ready):
        raise ConfigError(f"SESSIONS_READY_FILE must be a file path, not {ready!r}")
    if not isinstance(config["ACCESS_LOG"], str) or not config["ACCESS_LOG"]:
        raise ConfigError(f"SESSIONS_ACCESS_LOG must be -, off or a file path, not {config['ACCESS_LOG']!r}")


def _check_activity(config) -> None:
    seconds = config["TOUCH_SECONDS"]
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ConfigError(f"SESSIONS_TOUCH_SECONDS must be a whole number of seconds (0: activity not recorded), "
                          f"not {seconds!r}")
    if config["IP_MODE"] not in IP_MODES:
        raise ConfigError(f"SESSIONS_IP_MODE must be one of {', '.join(IP_MODES)}, not {config['IP_MODE']!r}")
    if not isinstance(config["ACTIVITY_FIELDS"], bool):
        raise ConfigError(f"SESSIONS_ACTIVITY_FIELDS must be true or false, not {config['ACTIVITY_FIELDS']!r}")


def _check_webhook(config) -> None:
    url, secret = config["WEBHOOK_URL"], config["WEBHOOK_SECRET"]
    if url == "":
        config["WEBHOOK_URL"] = url = None  # set but empty: no events
    if url is not None:
        scheme, _, rest = url.partition("://") if isinstance(url, str) else ("", "", "")
        if scheme not in ("http", "https") or not rest or any(c in url for c in " \t\r\n"):
            raise ConfigError(f"SESSIONS_WEBHOOK_URL must be an http:// or https:// URL, not {url!r}")
        if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
            # Never shown: it is a secret.
            raise ConfigError(f"SESSIONS_WEBHOOK_SECRET must be set, at least {MIN_SECRET_LENGTH} characters, "
                              "when SESSIONS_WEBHOOK_URL is")
    for key in ("WEBHOOK_MAX_AGE", "WEBHOOK_RETRY_BASE"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"SESSIONS_{key} must be a positive number of seconds, not {value!r}")


def _check_origins(config) -> None:
    public = config["PUBLIC_ORIGIN"]
    if public is not None and (not isinstance(public, str) or not _is_origin(public)):
        raise ConfigError(f"SESSIONS_PUBLIC_ORIGIN must be an origin such as https://files.example.com, not {public!r}")
    origins = config["CORS_ORIGINS"]
    if not isinstance(origins, str):
        raise ConfigError(f"SESSIONS_CORS_ORIGINS must be comma-separated origins, not {origins!r}")
    for origin in parse_origins(origins):
        if origin == "*":
            raise ConfigError("SESSIONS_CORS_ORIGINS cannot be '*': browsers refuse it with credentials; "
                              "name each origin, such as http://localhost:5173")
        if not _is_origin(origin):
            raise ConfigError(f"SESSIONS_CORS_ORIGINS: {origin!r} is not an origin such as http://localhost:5173")


def _check_browser(config) -> None:
    samesite = config["COOKIE_SAMESITE"]
    if not isinstance(samesite, str) or samesite.capitalize() not in SAMESITE_VALUES:
        raise ConfigError(f"SESSIONS_COOKIE_SAMESITE must be one of {', '.join(SAMESITE_VALUES)}, not {samesite!r}")
    if samesite.capitalize() == "None" and not config["COOKIE_SECURE"]:
        raise ConfigError("SESSIONS_COOKIE_SAMESITE=None needs SESSIONS_COOKIE_SECURE=true: browsers drop a "
                          "SameSite=None cookie that is not Secure")
    if config["ERROR_PROFILE"] not in ERROR_PROFILES:
        raise ConfigError(f"SESSIONS_ERROR_PROFILE must be one of {', '.join(ERROR_PROFILES)}, "
                          f"not {config['ERROR_PROFILE']!r}")


def parse_origins(text: str | tuple) -> tuple[str, ...]:
    """SESSIONS_CORS_ORIGINS as a tuple of origins (already parsed: as is)."""
    if isinstance(text, tuple):
        return text
    return tuple(part.strip().rstrip("/") for part in text.split(",") if part.strip())


def _is_origin(text: str) -> bool:
    """scheme://host[:port] and nothing more (no path, query or credentials)."""
    scheme, sep, rest = text.rstrip("/").partition("://")
    return (scheme in ("http", "https") and bool(sep) and bool(rest)
            and not any(c in rest for c in "/?#@ \t"))


def _without_password(url):
    """A URL as an error may show it: redis://user:secret@host becomes redis://***@host."""
    if not isinstance(url, str) or "@" not in url:
        return url
    head, _, host = url.rpartition("@")
    scheme, separator, _ = head.rpartition("://")
    return f"{scheme}{separator}***@{host}"


def rate_limit_is_off(text: str) -> bool:
    """SESSIONS_LOGIN_RATE_LIMIT=off: login is not limited (test harnesses, dev mock)."""
    return text.strip().lower() == "off"


def _valid_limit(text: str) -> bool:
    if rate_limit_is_off(text):
        return True
    try:
        return bool(parse_many(text))
    except ValueError:
        return False
