"""Configuration from SESSIONS_* variables, and refusal of nonsense."""

import pytest

from app import create_app
from settings import ConfigError


def test_environment_variables_configure_the_app(tmp_path, monkeypatch):
    monkeypatch.setenv("SESSIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("SESSIONS_TTL_SECONDS", "3600")
    monkeypatch.setenv("SESSIONS_COOKIE_SECURE", "true")
    monkeypatch.setenv("SESSIONS_COOKIE_NAME", "sid")
    monkeypatch.setenv("SESSIONS_LOGIN_RATE_LIMIT", "off")
    app = create_app()
    config = app.config
    assert config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'env.db'}"
    assert (config["TTL_SECONDS"], config["COOKIE_SECURE"], config["COOKIE_NAME"]) == (3600, True, "sid")
    assert "login_limiter" not in app.extensions  # off: login is not limited at all


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SESSIONS_TTL_SECONDS", "soon", "SESSIONS_TTL_SECONDS must be a positive whole number"),
        ("SESSIONS_TTL_SECONDS", "0", "SESSIONS_TTL_SECONDS must be a positive whole number"),
        ("SESSIONS_MAX_BODY_BYTES", "-1", "SESSIONS_MAX_BODY_BYTES must be a positive whole number"),
        ("SESSIONS_MAX_PER_USER", "0", "SESSIONS_MAX_PER_USER must be a positive whole number, not 0"),
        ("SESSIONS_MAX_PER_USER", "lots", "SESSIONS_MAX_PER_USER must be a positive whole number, not 'lots'"),
        ("SESSIONS_HASH_CONCURRENCY", "0", "SESSIONS_HASH_CONCURRENCY must be a positive whole number, not 0"),
        ("SESSIONS_HASH_CONCURRENCY", "1.5", "SESSIONS_HASH_CONCURRENCY must be a positive whole number"),
        ("SESSIONS_COOKIE_SECURE", "yes", "SESSIONS_COOKIE_SECURE must be true or false"),
        ("SESSIONS_COOKIE_NAME", '"a b"', "SESSIONS_COOKIE_NAME is not a valid cookie name"),
        ("SESSIONS_LOGIN_RATE_LIMIT", "lots", "SESSIONS_LOGIN_RATE_LIMIT is not a rate limit"),
        ("SESSIONS_RATELIMIT_STORAGE_URL", "foo://x", "SESSIONS_RATELIMIT_STORAGE_URL must be a storage URL"),
        ("SESSIONS_RATELIMIT_STORAGE_URL", "redis", "SESSIONS_RATELIMIT_STORAGE_URL must be a storage URL"),
        ("SESSIONS_BIND", "8000", "SESSIONS_BIND must be host:port"),
        ("SESSIONS_BIND", "127.0.0.1:99999", "SESSIONS_BIND must be host:port"),
        ("SESSIONS_WORKERS", "0", "SESSIONS_WORKERS must be a positive whole number"),
        ("SESSIONS_THREADS", "many", "SESSIONS_THREADS must be a positive whole number"),
        ("SESSIONS_LOG_LEVEL", "loud", "SESSIONS_LOG_LEVEL must be one of"),
        ("SESSIONS_CORS_ORIGINS", "*", "SESSIONS_CORS_ORIGINS cannot be '\\*'"),
        ("SESSIONS_CORS_ORIGINS", "http://localhost:5173,localhost:3000", "'localhost:3000' is not an origin"),
        ("SESSIONS_PUBLIC_ORIGIN", "https://files.example.com/app", "SESSIONS_PUBLIC_ORIGIN must be an origin"),
    ],
)
def test_a_bad_setting_stops_the_start_and_names_itself(tmp_path, monkeypatch, variable, value, message):
    monkeypatch.setenv("SESSIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message):
        create_app()


def test_cors_origins_are_a_comma_separated_list(make_app):
    app = make_app(CORS_ORIGINS="http://localhost:5173, https://app.example.com/")
    assert app.config["CORS_ORIGINS"] == ("http://localhost:5173", "https://app.example.com")
    assert make_app().config["CORS_ORIGINS"] == ()
