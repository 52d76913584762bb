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
        ("SESSIONS_COOKIE_SECURE", "yes", "SESSIONS_COOKIE_SECURE must be true or false"),
        ("SESSIONS_COOKIE_NAME", '"a b"', "SESSIONS_COOKIE_NAME is not a valid cookie name"),
        ("SESSIONS_LOGIN_RATE_LIMIT", "lots", "SESSIONS_LOGIN_RATE_LIMIT is not a rate limit"),
        ("SESSIONS_LOGIN_ADDRESS_RATE_LIMIT", "30", "SESSIONS_LOGIN_ADDRESS_RATE_LIMIT is not a rate limit"),
        ("SESSIONS_LOGIN_USERNAME_RATE_LIMIT", "many per day", "SESSIONS_LOGIN_USERNAME_RATE_LIMIT is not a rate"),
        ("SESSIONS_RATELIMIT_STORAGE_URL", "rdis://u:hunter2@cache", r"not 'rdis://\*\*\*@cache'"),
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
        ("SESSIONS_COOKIE_SAMESITE", "Loose", "SESSIONS_COOKIE_SAMESITE must be one of Lax, Strict, None"),
        ("SESSIONS_COOKIE_SAMESITE", "None", "SESSIONS_COOKIE_SAMESITE=None needs SESSIONS_COOKIE_SECURE=true"),
        ("SESSIONS_ERROR_PROFILE", "zipline", "SESSIONS_ERROR_PROFILE must be one of contract, zipline-v4"),
    ],
)
def test_a_bad_setting_stops_the_start_and_names_itself(tmp_path, monkeypatch, variable, value, message):
    monkeypatch.setenv("SESSIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message):
        create_app()


def test_login_limits_count_in_the_database_unless_a_storage_is_named(make_app):
    assert make_app(LOGIN_RATE_LIMIT="10 per minute").config["RATELIMIT_STORAGE_URL"] is None
    assert make_app(LOGIN_RATE_LIMIT="10 per minute", RATELIMIT_STORAGE_URL="").config["RATELIMIT_STORAGE_URL"] is None


def test_cors_origins_are_a_comma_separated_list(make_app):
    app = make_app(CORS_ORIGINS="http://localhost:5173, https://app.example.com/")
    assert app.config["CORS_ORIGINS"] == ("http://localhost:5173", "https://app.example.com")
    assert make_app().config["CORS_ORIGINS"] == ()


@pytest.mark.parametrize(("value", "spelled"), [("lax", "Lax"), ("STRICT", "Strict"), ("none", "None")])
def test_samesite_is_spelled_as_browsers_expect(make_app, value, spelled):
    assert make_app(COOKIE_SAMESITE=value, COOKIE_SECURE=True).config["COOKIE_SAMESITE"] == spelled
