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
        ("SESSIONS_RATELIMIT_STORAGE_URL", "foo://x", "SESSIONS_RATELIMIT_STORAGE_URL must be a storage URL"),
        ("SESSIONS_RATELIMIT_STORAGE_URL", "redis", "SESSIONS_RATELIMIT_STORAGE_URL must be a storage URL"),
    ],
)
def test_a_bad_setting_stops_the_start_and_names_itself(tmp_path, monkeypatch, variable, value, message):
    monkeypatch.setenv("SESSIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=message):
        create_app()
