"""Configuration: defaults, SESSIONS_* environment variables, and their checks."""

import os

from flask import Flask
from limits import parse_many
from limits.storage import SCHEMES

# Where the login limit can count: the `limits` library's synchronous storages.
STORAGE_SCHEMES = {scheme for scheme in SCHEMES if not scheme.startswith("async+")}


class ConfigError(Exception):
    """A setting is wrong; the service refuses to start and says which."""


# Keys as they stand after the SESSIONS_ prefix; each one is in the README's table.
DEFAULTS = {
    "DATABASE_URL": None,  # None: sqlite file instance/sessions.db
    "COOKIE_NAME": "zipline_token",
    "COOKIE_SECURE": False,
    "TTL_SECONDS": 7 * 24 * 3600,
    "LOGIN_RATE_LIMIT": "10 per minute",
    "RATELIMIT_STORAGE_URL": "memory://",
    "RATELIMIT_KEY_PREFIX": "zipline-sessions",  # keeps counts apart when services share a Redis
    "MAX_BODY_BYTES": 16 * 1024,
    "AUTO_MIGRATE": True,  # bring the schema to head at start; off: flask --app app db-upgrade
    "TRUSTED_PROXIES": 0,  # how many reverse proxies' X-Forwarded-For / -Proto to believe
}


def load_settings(app: Flask, overrides: dict | None) -> None:
    """Fill app.config from DEFAULTS, then the environment, then `overrides` (tests)."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("SESSIONS")
    if overrides:
        app.config.update(overrides)
    config = app.config
    _check(config)
    if not config["DATABASE_URL"]:
        os.makedirs(app.instance_path, exist_ok=True)
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "sessions.db")
    config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"]
    # Database errors are logged; their SQL parameters (hashes, usernames) are not.
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {"hide_parameters": True}
    config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"]


def _check(config) -> None:
    """Refuse to start on a setting that makes no sense, naming it."""
    for key in ("TTL_SECONDS", "MAX_BODY_BYTES"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"SESSIONS_{key} must be a positive whole number, not {value!r}")
    for key in ("COOKIE_SECURE", "AUTO_MIGRATE"):
        if not isinstance(config[key], bool):
            raise ConfigError(f"SESSIONS_{key} must be true or false, not {config[key]!r}")
    proxies = config["TRUSTED_PROXIES"]
    if isinstance(proxies, bool) or not isinstance(proxies, int) or proxies < 0:
        raise ConfigError(f"SESSIONS_TRUSTED_PROXIES must be a whole number (0 or more), not {proxies!r}")
    name = config["COOKIE_NAME"]
    if not isinstance(name, str) or not name or any(c in name for c in ' ;,="\t\r\n'):
        raise ConfigError(f"SESSIONS_COOKIE_NAME is not a valid cookie name: {name!r}")
    limit = config["LOGIN_RATE_LIMIT"]
    if not isinstance(limit, str) or not _valid_limit(limit):
        raise ConfigError(f"SESSIONS_LOGIN_RATE_LIMIT is not a rate limit such as '10 per minute' or 'off': {limit!r}")
    if not isinstance(config["RATELIMIT_KEY_PREFIX"], str):
        raise ConfigError(f"SESSIONS_RATELIMIT_KEY_PREFIX must be text, not {config['RATELIMIT_KEY_PREFIX']!r}")
    storage = config["RATELIMIT_STORAGE_URL"]
    if not isinstance(storage, str) or "://" not in storage or storage.partition("://")[0] not in STORAGE_SCHEMES:
        raise ConfigError("SESSIONS_RATELIMIT_STORAGE_URL must be a storage URL such as memory:// or "
                          f"redis://host, not {storage!r}")


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
