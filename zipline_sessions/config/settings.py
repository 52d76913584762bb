"""Configuration: defaults, SESSIONS_* environment variables, and their checks."""

import difflib
import os

from flask import Flask

from zipline_sessions.config.checks import check_settings, parse_hosts, parse_origins

# The session cookie's name in Zipline v4 (its src/server/session.ts).
ZIPLINE_V4_COOKIE = "zipline_session"
# Keys as they stand after the SESSIONS_ prefix; each one is in the README's table.
DEFAULTS = {
    "DATABASE_URL": None,  # None: sqlite file instance/sessions.db
    "COOKIE_NAME": None,  # None: zipline_token, or zipline_session (Zipline v4's) in the zipline-v4 profile
    # None: Secure whenever the service is reached over HTTPS (PUBLIC_ORIGIN https, or a trusted
    # proxy's X-Forwarded-Proto); true: always; false: never (auth/caller.py cookie_is_secure).
    "COOKIE_SECURE": None,
    "COOKIE_SAMESITE": "Lax",  # Lax, Strict, or None (cross-site browser clients; needs COOKIE_SECURE)
    "TTL_SECONDS": 7 * 24 * 3600,
    # Login limits (README, "Login limits"): per (username, client address); off: none at all.
    "LOGIN_RATE_LIMIT": "10 per minute",
    "LOGIN_ADDRESS_RATE_LIMIT": "30 per minute",  # per client address, whatever the username
    "LOGIN_USERNAME_RATE_LIMIT": "1000 per hour",  # per username: the backstop against many addresses
    # API token resets per user (PATCH /api/user/token), whatever the address; off: none.
    "TOKEN_RESET_RATE_LIMIT": "10 per hour",
    "RATELIMIT_STORAGE_URL": None,  # None: count in the database; redis://... to count in Redis
    "RATELIMIT_KEY_PREFIX": "zipline-sessions",  # keeps counts apart when services share a Redis
    "MAX_BODY_BYTES": 16 * 1024,
    "MAX_PER_USER": 100,  # live sessions per user; a login beyond it ends the user's oldest
    "HASH_CONCURRENCY": 1,  # password hashes computed at once per worker process (64 MiB each)
    # Logins that may wait for a hashing thread per worker, and how long (seconds) before 503.
    "HASH_QUEUE": 1,
    "HASH_QUEUE_WAIT": 0.5,
    # Bounded waits on the database (storage/database.py, storage/watchdog.py), in seconds.
    "DATABASE_CONNECT_TIMEOUT": 5,  # PostgreSQL: connecting, startup and login included
    "DATABASE_TIMEOUT": 10,  # PostgreSQL: a statement's round trip, then its connection is cut
    "SQLITE_BUSY_TIMEOUT": 5,  # SQLite: a write waits this long for another writer, then 503
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
    "PARENT_PID": None,  # a process id: serve.py stops when that process is gone (a test runner's)
    # Test fixtures (README, "Use it in tests"): the /__test__/ routes, for loopback clients only.
    "TEST_CONTROL": False,
    # Host names besides loopback ones under which test control answers (comma-separated; .name: and subdomains).
    "TEST_CONTROL_HOSTS": "",
    "SEED_FILE": None,  # a seed file loaded at start into a database that has no users
    # Last activity (activity/last_seen.py): written at most once per TOUCH_SECONDS per session; 0: not recorded.
    "TOUCH_SECONDS": 60,
    "IP_MODE": "full",  # full, truncate (IPv4 /24, IPv6 /48) or off: the address kept with the activity
    "ACTIVITY_FIELDS": False,  # true: Session objects also carry lastSeenAt and ip
    # Each server worker writes its sessions' last activity in one transaction this often (seconds).
    "ACTIVITY_FLUSH_SECONDS": 1.0,
    # A session unused this long (seconds) is refused and purged as expired; 0: no idle timeout.
    "IDLE_TIMEOUT": 0,
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
    "WEBHOOK_DEADLINE": 5.0,  # seconds one delivery attempt may take in all (connect, send, answer)
    # A session's device (devices/): what a login beyond MAX_PER_USER does (evict-oldest or refuse),
    # and a MaxMind-format file (GeoLite2, DB-IP Lite) giving sessions a location; None: no location.
    "MAX_PER_USER_POLICY": "evict-oldest",
    "GEOIP_DATABASE": None,
}



def load_settings(app: Flask, overrides: dict | None) -> None:
    """Fill app.config from DEFAULTS, then the environment, then `overrides` (tests)."""
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("SESSIONS")
    if overrides:
        app.config.update(overrides)
    config = app.config
    if config["COOKIE_NAME"] is None:
        config["COOKIE_NAME"] = ZIPLINE_V4_COOKIE if config["ERROR_PROFILE"] == "zipline-v4" else "zipline_token"
    check_settings(config)
    if not config["DATABASE_URL"]:  # the folder is made with the file (storage/database.py, prepare_sqlite_file)
        config["DATABASE_URL"] = "sqlite:///" + os.path.join(app.instance_path, "sessions.db")
    config["SQLALCHEMY_DATABASE_URI"] = config["DATABASE_URL"]
    # Database errors are logged; their SQL parameters (hashes, usernames) are not. (app.py
    # replaces these with storage.database.engine_options, which also bounds PostgreSQL's waits.)
    config["SQLALCHEMY_ENGINE_OPTIONS"] = {"hide_parameters": True}
    config["MAX_CONTENT_LENGTH"] = config["MAX_BODY_BYTES"]
    config["CORS_ORIGINS"] = parse_origins(config["CORS_ORIGINS"])
    config["TEST_CONTROL_HOSTS"] = parse_hosts(config["TEST_CONTROL_HOSTS"])
    config["REDIRECT_ORIGINS"] = parse_origins(config["REDIRECT_ORIGINS"])
    config["COOKIE_SAMESITE"] = config["COOKIE_SAMESITE"].capitalize()  # lax -> Lax, as browsers spell it
    if config["WORKERS"] is None:
        config["WORKERS"] = os.cpu_count() or 1


# Variables of the test suite (tests/conftest.py), not of the service.
TEST_VARIABLE_PREFIX = "SESSIONS_TEST_"


def _test_suite_variable(name: str) -> bool:
    """SESSIONS_TEST_* but SESSIONS_TEST_CONTROL* (a typo of SESSIONS_TEST_CONTROL_HOSTS is warned)."""
    return name.startswith(TEST_VARIABLE_PREFIX) and not name.startswith("SESSIONS_TEST_CONTROL")


def unknown_variables(environ) -> list[str]:
    """A warning line for each SESSIONS_* variable that is no setting (a typo such as
    SESSIONS_TTL), naming the nearest one that is."""
    known = [f"SESSIONS_{key}" for key in DEFAULTS]
    lines = []
    for name in sorted(environ):
        if name.startswith("SESSIONS_") and name not in known and not _test_suite_variable(name):
            nearest = difflib.get_close_matches(name, known, n=1, cutoff=0)[0]
            lines.append(f"{name} is not a setting and is ignored; did you mean {nearest}?")
    return lines
























