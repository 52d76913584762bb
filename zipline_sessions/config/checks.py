"""The checks of each setting: a setting that makes no sense stops the start with one line naming it."""

import re

import click
from limits import parse_many
from limits.storage import SCHEMES

# Where the login limit can count: the `limits` library's synchronous storages.
STORAGE_SCHEMES = {scheme for scheme in SCHEMES if not scheme.startswith("async+")}


class ConfigError(click.ClickException):
    """A setting is wrong; the service refuses to start and says which, in one line.

    A ClickException, so that `flask --app app <command>` prints "Error: <message>" and no
    traceback when the app cannot be made.
    """
IP_MODES = ("full", "truncate", "off")
MAX_FLUSH_SECONDS = 60
MIN_SECRET_LENGTH = 16
MAX_WEBHOOK_DEADLINE = 300  # a delivery thread is never held longer than this by one receiver
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
SAMESITE_VALUES = ("Lax", "Strict", "None")
ERROR_PROFILES = ("contract", "zipline-v4")
# A SESSIONS_TEST_CONTROL_HOSTS entry: a name (labels of letters, digits, - and _), or .name for it
# and its subdomains. No wildcard, no port.
HOST_NAME = re.compile(r"\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def check_settings(config) -> None:
    """Refuse to start on a setting that makes no sense, naming it."""
    for key in ("TTL_SECONDS", "MAX_BODY_BYTES", "MAX_PER_USER", "HASH_CONCURRENCY"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"SESSIONS_{key} must be a positive whole number, not {value!r}")
    for key in ("HASH_QUEUE_WAIT", "DATABASE_CONNECT_TIMEOUT", "DATABASE_TIMEOUT", "SQLITE_BUSY_TIMEOUT"):
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"SESSIONS_{key} must be a positive number of seconds, not {value!r}")
    queue = config["HASH_QUEUE"]
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < 0:
        raise ConfigError(f"SESSIONS_HASH_QUEUE must be a whole number (0 or more), not {queue!r}")
    if config["COOKIE_SECURE"] is not None and not isinstance(config["COOKIE_SECURE"], bool):
        raise ConfigError(f"SESSIONS_COOKIE_SECURE must be true or false (unset: when reached over HTTPS), "
                          f"not {config['COOKIE_SECURE']!r}")
    for key in ("AUTO_MIGRATE", "TEST_CONTROL", "PAGES"):
        if not isinstance(config[key], bool):
            raise ConfigError(f"SESSIONS_{key} must be true or false, not {config[key]!r}")
    proxies = config["TRUSTED_PROXIES"]
    if isinstance(proxies, bool) or not isinstance(proxies, int) or proxies < 0:
        raise ConfigError(f"SESSIONS_TRUSTED_PROXIES must be a whole number (0 or more), not {proxies!r}")
    name = config["COOKIE_NAME"]
    if not isinstance(name, str) or not name or any(c in name for c in ' ;,="\t\r\n'):
        raise ConfigError(f"SESSIONS_COOKIE_NAME is not a valid cookie name: {name!r}")
    for key in ("LOGIN_RATE_LIMIT", "LOGIN_ADDRESS_RATE_LIMIT", "LOGIN_USERNAME_RATE_LIMIT", "TOKEN_RESET_RATE_LIMIT"):
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
    _check_devices(config)


MAX_PER_USER_POLICIES = ("evict-oldest", "refuse")


def _check_devices(config) -> None:
    policy = config["MAX_PER_USER_POLICY"]
    if policy not in MAX_PER_USER_POLICIES:
        raise ConfigError(f"SESSIONS_MAX_PER_USER_POLICY must be one of {', '.join(MAX_PER_USER_POLICIES)}, "
                          f"not {policy!r}")
    geoip = config["GEOIP_DATABASE"]
    if geoip == "":
        config["GEOIP_DATABASE"] = geoip = None  # set but empty: no location
    if geoip is not None and not isinstance(geoip, str):
        raise ConfigError(f"SESSIONS_GEOIP_DATABASE must be a file path, not {geoip!r}")
    if geoip is not None and (config["IP_MODE"] == "off" or config["TOUCH_SECONDS"] == 0):
        # The location is resolved from the address recorded with the activity: none is recorded.
        raise ConfigError("SESSIONS_GEOIP_DATABASE needs the address recorded: unset it, or set "
                          "SESSIONS_IP_MODE to full or truncate and SESSIONS_TOUCH_SECONDS above 0")


def _check_fixture(config) -> None:
    hosts = config["TEST_CONTROL_HOSTS"]
    if not isinstance(hosts, str | tuple):
        raise ConfigError(f"SESSIONS_TEST_CONTROL_HOSTS must be comma-separated host names, not {hosts!r}")
    for host in parse_hosts(hosts):
        if not HOST_NAME.fullmatch(host):
            raise ConfigError(f"SESSIONS_TEST_CONTROL_HOSTS: {host!r} is not a host name such as mock.test or "
                              ".mock.test (and its subdomains); name each host, without a port")
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
    parent = config["PARENT_PID"]
    if parent is not None and (isinstance(parent, bool) or not isinstance(parent, int) or parent <= 1):
        raise ConfigError(f"SESSIONS_PARENT_PID must be a process id, a whole number above 1, not {parent!r}")
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
    flush = config["ACTIVITY_FLUSH_SECONDS"]
    if isinstance(flush, bool) or not isinstance(flush, int | float) or not 0 < flush <= MAX_FLUSH_SECONDS:
        raise ConfigError(f"SESSIONS_ACTIVITY_FLUSH_SECONDS must be a number of seconds above 0, at most "
                          f"{MAX_FLUSH_SECONDS}, not {flush!r}")
    _check_idle_timeout(config["IDLE_TIMEOUT"], seconds)


def _check_idle_timeout(idle, touch: int) -> None:
    """The idle timeout reads the recorded last use, which lags the real one by up to
    SESSIONS_TOUCH_SECONDS: it needs activity recorded, and a lag small beside it."""
    if isinstance(idle, bool) or not isinstance(idle, int) or idle < 0:
        raise ConfigError(f"SESSIONS_IDLE_TIMEOUT must be a whole number of seconds (0: none), not {idle!r}")
    if idle and not touch:
        raise ConfigError("SESSIONS_IDLE_TIMEOUT needs last activity recorded, but SESSIONS_TOUCH_SECONDS is 0")
    if idle and touch * 4 > idle:
        raise ConfigError(f"SESSIONS_TOUCH_SECONDS ({touch}) is more than a quarter of SESSIONS_IDLE_TIMEOUT "
                          f"({idle}): lower it, or raise the idle timeout to at least {touch * 4}")


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
    deadline = config["WEBHOOK_DEADLINE"]
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or not 0 < deadline <= MAX_WEBHOOK_DEADLINE:
        raise ConfigError(f"SESSIONS_WEBHOOK_DEADLINE must be a number of seconds above 0 and at most "
                          f"{MAX_WEBHOOK_DEADLINE}, not {deadline!r}")


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
    redirects = config["REDIRECT_ORIGINS"]
    if not isinstance(redirects, str | tuple):
        raise ConfigError(f"SESSIONS_REDIRECT_ORIGINS must be comma-separated origins, not {redirects!r}")
    for origin in parse_origins(redirects):
        if not _is_origin(origin):
            raise ConfigError(f"SESSIONS_REDIRECT_ORIGINS: {origin!r} is not an origin such as https://files.example.com")
    secret = config["SECRET_KEY"]
    if secret is not None and (not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH):
        # Never shown: it is a secret.
        raise ConfigError(f"SESSIONS_SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters "
                          "(unset: a random key kept in the database)")


def _check_browser(config) -> None:
    samesite = config["COOKIE_SAMESITE"]
    if not isinstance(samesite, str) or samesite.capitalize() not in SAMESITE_VALUES:
        raise ConfigError(f"SESSIONS_COOKIE_SAMESITE must be one of {', '.join(SAMESITE_VALUES)}, not {samesite!r}")
    if samesite.capitalize() == "None" and config["COOKIE_SECURE"] is not True:
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


def parse_hosts(text: str | tuple) -> tuple[str, ...]:
    """SESSIONS_TEST_CONTROL_HOSTS as a tuple of lower-case names without a trailing dot (already
    parsed: as is)."""
    if isinstance(text, tuple):
        return text
    return tuple(part.strip().lower().removesuffix(".") for part in text.split(",") if part.strip())


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
