"""Configuration: defaults, SESSIONS_* environment variables, and their checks."""

import difflib
import os

from flask import Flask

from zipline_sessions.config.checks import check_settings, parse_origins

# Keys as they stand after the SESSIONS_ prefix; each one is in the README's table.
DEFAULTS = {
    "DATABASE_URL": None,  # None: sqlite file instance/sessions.db
    "COOKIE_NAME": "zipline_token",
    # None: Secure whenever the service is reached over HTTPS (PUBLIC_ORIGIN https, or a trusted
    # proxy's X-Forwarded-Proto); true: always; false: never (auth/caller.py cookie_is_secure).
    "COOKIE_SECURE": None,
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
    # The shape of every error body: the contract's, or the one Zipline v4 sends (web/errors.py).
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
    # Last activity (activity/last_seen.py): written at most once per TOUCH_SECONDS per session; 0: not recorded.
    "TOUCH_SECONDS": 60,
    "IP_MODE": "full",  # full, truncate (IPv4 /24, IPv6 /48) or off: the address kept with the activity
    "ACTIVITY_FIELDS": False,  # true: Session objects also carry lastSeenAt and ip
    # Sign-in pages under /auth/ (pages/): on by default; REDIRECT_ORIGINS (comma-separated) may
    # receive a browser after sign-in besides this origin; SECRET_KEY signs the pages' CSRF
    # tokens (None: a random key kept in the database, made once, shared by every worker).
    "PAGES": True,
    "REDIRECT_ORIGINS": "",
    "SECRET_KEY": None,
    # Session events (activity/events.py), POSTed to WEBHOOK_URL signed with WEBHOOK_SECRET; None: no events.
    "WEBHOOK_URL": None,
    "WEBHOOK_SECRET": None,
    "WEBHOOK_MAX_AGE": 24 * 3600,  # seconds an event is retried before it is dead
    "WEBHOOK_RETRY_BASE": 1.0,  # seconds before the first retry; doubles each time, up to 10 minutes
}



def load_settings(app: Flask, overrides: dict | None) -> None:
    """Fill app.config from DEFAULTS, then the environment, then `overrides` (tests)."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("SESSIONS")
    if overrides:
        app.config.update(overrides)
    config = app.config
    check_settings(config)
    if not config["DATABASE_URL"]:  # the folder is made with the file (database.prepare_sqlite_file)
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "sessions.db")
    config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"]
    # Database errors are logged; their SQL parameters (hashes, usernames) are not.
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {"hide_parameters": True}
    config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"]
    config["CORS_ORIGINS"] = parse_origins(config["CORS_ORIGINS"])
    config["REDIRECT_ORIGINS"] = parse_origins(config["REDIRECT_ORIGINS"])
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
























