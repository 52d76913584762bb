"""Configuration from SESSIONS_* variables, and refusal of nonsense."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import create_app
from zipline_sessions.config.checks import ConfigError


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
        ("SESSIONS_PARENT_PID", "pytest", ("SESSIONS_PARENT_PID must be a process id, a whole number above 1, "
                                          "not 'pytest'")),
        ("SESSIONS_PARENT_PID", "1", "SESSIONS_PARENT_PID must be a process id, a whole number above 1, not 1"),
        ("SESSIONS_HASH_CONCURRENCY", "1.5", "SESSIONS_HASH_CONCURRENCY must be a positive whole number"),
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
        ("SESSIONS_TEST_CONTROL_HOSTS", "*", "SESSIONS_TEST_CONTROL_HOSTS: '\\*' is not a host name"),
        ("SESSIONS_TEST_CONTROL_HOSTS", "mock.test:8000", "SESSIONS_TEST_CONTROL_HOSTS: 'mock.test:8000' is not a host"),
        ("SESSIONS_TEST_CONTROL_HOSTS", "ok.test, http://mock.test", "'http://mock.test' is not a host name"),
        ("SESSIONS_TEST_CONTROL_HOSTS", "*.mock.test", "'\\*.mock.test' is not a host name"),
        ("SESSIONS_TEST_CONTROL_HOSTS", "3", "SESSIONS_TEST_CONTROL_HOSTS must be comma-separated host names, not 3"),
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


def test_test_control_hosts_are_a_comma_separated_list_of_names(make_app):
    app = make_app(TEST_CONTROL_HOSTS="Mock.Test., .dev.test , ")
    assert app.config["TEST_CONTROL_HOSTS"] == ("mock.test", ".dev.test")
    assert make_app().config["TEST_CONTROL_HOSTS"] == ()


@pytest.mark.parametrize(("value", "spelled"), [("lax", "Lax"), ("STRICT", "Strict"), ("none", "None")])
def test_samesite_is_spelled_as_browsers_expect(make_app, value, spelled):
    assert make_app(COOKIE_SAMESITE=value, COOKIE_SECURE=True).config["COOKIE_SAMESITE"] == spelled


ROOT = Path(__file__).resolve().parents[2]


def run_flask(env: dict, *args: str) -> subprocess.CompletedProcess:
    """The real `flask` command, with these SESSIONS_* variables on top of a clean set."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("SESSIONS_")}
    return subprocess.run([str(Path(sys.executable).parent / "flask"), "--app", "app", *args], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SESSIONS_TTL_SECONDS", "soon", "Error: SESSIONS_TTL_SECONDS must be a positive whole number, not 'soon'"),
        ("SESSIONS_MAX_PER_USER", "0", "Error: SESSIONS_MAX_PER_USER must be a positive whole number, not 0"),
        ("SESSIONS_DATABASE_URL", "postgresql+psycopg://root:hunter2@127.0.0.1:1/x",
         "Error: SESSIONS_DATABASE_URL: cannot open the database postgresql+psycopg://root:***@127.0.0.1:1/x"),
    ],
)
@pytest.mark.parametrize("command", [["list-sessions", "alice"], ["--help"]])
def test_the_flask_cli_says_what_is_wrong_in_one_line(tmp_path, variable, value, message, command):
    env = {"SESSIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", variable: value}
    result = run_flask(env, *command)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


def unopenable(tmp_path) -> dict:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "garbage.db").write_bytes(b"this is not a SQLite database, just text " * 100)
    return {
        "folder is a file": (f"sqlite:///{tmp_path}/a-file/sessions.db", f"folder {tmp_path}/a-file"),
        "not a database": (f"sqlite:///{tmp_path}/garbage.db", f"{tmp_path}/garbage.db (file is not a database)"),
        "nobody answers": ("postgresql+psycopg://root:hunter2@127.0.0.1:1/x", "root:***@127.0.0.1:1/x"),
    }


@pytest.mark.parametrize("case", ["folder is a file", "not a database", "nobody answers"])
@pytest.mark.parametrize("auto_migrate", [True, False])
def test_a_database_that_cannot_be_opened_stops_the_start_naming_it(tmp_path, case, auto_migrate):
    url, named = unopenable(tmp_path)[case]
    with pytest.raises(ConfigError) as refused:
        create_app({"DATABASE_URL": url, "AUTO_MIGRATE": auto_migrate})
    message = str(refused.value)
    assert message.startswith("SESSIONS_DATABASE_URL: ") and named in message, message
    assert "\n" not in message and "hunter2" not in message


def test_an_unknown_sessions_variable_warns_naming_the_nearest_setting(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SESSIONS_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("SESSIONS_TTL", "3600")
    monkeypatch.setenv("SESSIONS_COOKIE_SECURED", "true")
    monkeypatch.setenv("SESSIONS_TEST_SOMETHING", "x")  # the test suite's own: no warning
    monkeypatch.setenv("SESSIONS_TEST_CONTROL_HOST", "mock.test")  # a setting's typo, though
    with caplog.at_level(logging.WARNING):
        create_app({"LOGIN_RATE_LIMIT": "off"})
    assert [record.getMessage() for record in caplog.records] == [
        "SESSIONS_COOKIE_SECURED is not a setting and is ignored; did you mean SESSIONS_COOKIE_SECURE?",
        "SESSIONS_TEST_CONTROL_HOST is not a setting and is ignored; did you mean SESSIONS_TEST_CONTROL_HOSTS?",
        "SESSIONS_TTL is not a setting and is ignored; did you mean SESSIONS_TTL_SECONDS?",
    ]
