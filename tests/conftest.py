import json
import os
import secrets
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from app import create_app
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db

# Set (by .ci/run) to a PostgreSQL server URL to run the whole suite on PostgreSQL;
# each run gets a throwaway database, and each test an empty schema in it.
POSTGRES_SERVER = os.environ.get("SESSIONS_TEST_POSTGRES_URL")
BACKEND = "postgresql" if POSTGRES_SERVER else "sqlite"
sqlite_only = pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite only (its file, pragmas or query planner)")
# For a test that uses no database of the suite's (a PostgreSQL of its own, or none): the SQLite
# pass runs it, the PostgreSQL pass would only run it again.
run_once = pytest.mark.skipif(BACKEND != "sqlite", reason="uses no database of the suite's: run in the SQLite pass")

WINDOWS_CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/122.0.0.0"
IPHONE_SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1"

# The contract's two sessions belong to alice; bob and carol are there to be kept apart.
SEED = {
    "users": [
        {
            "username": "alice",
            "password": "wonderland",
            "token": "tok-alice",
            "sessions": [
                {"id": "sess_abc123", "token": "cookie-abc", "ua": WINDOWS_CHROME,
                 "createdAt": "2024-03-15T10:30:00.000Z", "expiresAt": "2099-01-01T00:00:00Z"},
                {"id": "sess_def456", "token": "cookie-def", "ua": IPHONE_SAFARI,
                 "createdAt": "2024-03-14T08:15:00.000Z", "expiresAt": "2099-01-01T00:00:00Z"},
                {"id": "sess_old", "token": "cookie-old", "ua": WINDOWS_CHROME,
                 "createdAt": "2024-01-01T00:00:00Z", "expiresAt": "2024-01-08T00:00:00Z"},
            ],
        },
        {
            "username": "bob",
            "token": "tok-bob",
            "sessions": [{"id": "sess_bob1", "token": "cookie-bob", "ua": "curl/8.5.0",
                          "createdAt": "2024-03-16T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z"}],
        },
    ]
}


@pytest.fixture(scope="session")
def postgres_database():
    """A throwaway PostgreSQL database for this run, dropped at the end (None on SQLite)."""
    if not POSTGRES_SERVER:
        yield None
        return
    name = f"zipline_sessions_test_{secrets.token_hex(6)}"
    admin = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield make_url(POSTGRES_SERVER).set(database=name)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()


def empty_database(folder: Path, postgres_database) -> str:
    """An empty database: a new SQLite file, or a fresh schema in the run's PostgreSQL database."""
    if postgres_database is None:
        return f"sqlite:///{folder / 'sessions.db'}"
    engine = create_engine(postgres_database)
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    return postgres_database.render_as_string(hide_password=False)


@pytest.fixture
def database_url(tmp_path, postgres_database) -> str:
    return empty_database(tmp_path, postgres_database)


@pytest.fixture
def make_app(database_url):
    """create_app on this test's database (login not limited unless asked); engines closed after."""
    made = []

    def make(**overrides):
        app = create_app({"TESTING": True, "DATABASE_URL": database_url, "LOGIN_RATE_LIMIT": "off",
                          **overrides})
        made.append(app)
        return app

    yield make
    for app in made:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def make_seeded_app(make_app):
    """make_app, then SEED stored in the app's database."""

    def make(**overrides):
        app = make_app(**overrides)
        with app.app_context():
            seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], utcnow()))
        return app

    return make


@pytest.fixture
def app(make_seeded_app):
    """A fresh app on an empty database, seeded with SEED."""
    return make_seeded_app()


@pytest.fixture
def client(app):
    # Cookies are sent explicitly, as curl and the contract do.
    return app.test_client(use_cookies=False)


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def cookie(token: str) -> dict:
    return {"Cookie": f"zipline_token={token}"}


def assert_error(response, status, reason, message=None):
    """The contract's error shape, with this status, reason phrase and (when given) message."""
    assert response.status_code == status
    assert response.content_type == "application/json"
    assert set(response.json) == {"statusCode", "error", "message"}
    assert response.json["statusCode"] == status
    assert response.json["error"] == reason
    assert isinstance(response.json["message"], str) and response.json["message"]
    if message is not None:
        assert response.json["message"] == message


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


# Set (by .ci/run) to a Redis URL to test the shared login limit against a real Redis.
REDIS_URL = os.environ.get("SESSIONS_TEST_REDIS_URL")


@pytest.fixture
def redis_url():
    """A Redis URL to count logins in, or a skip that says Redis was not asked for."""
    if not REDIS_URL:
        pytest.skip("SESSIONS_TEST_REDIS_URL is not set (.ci/run sets it)")
    return REDIS_URL


@pytest.fixture
def security_events():
    """The security events logged during the test, as dicts."""
    import logging

    from zipline_sessions.security.security_log import JsonLineFormatter, logger

    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(json.loads(JsonLineFormatter().format(record)))

    handler = Collect()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)  # also when no app has configured the logger yet
    yield records
    logger.setLevel(level)
    logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def app_logger_restored():
    """Every app shares the "app" logger: a test that silences it for an expected 500 must not
    silence it for the tests after it."""
    import logging

    logger = logging.getLogger("app")
    disabled = logger.disabled
    yield
    logger.disabled = disabled
