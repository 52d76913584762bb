"""The SQLite store: where it lives, its settings, and that no secret is kept in clear."""

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from conftest import BACKEND, SEED, cookie, sqlite_only

from app import create_app
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db


def test_default_database_file_is_made_on_first_start(tmp_path):
    from flask import Flask
    from sqlalchemy.engine import make_url

    from zipline_sessions.config.settings import load_settings
    from zipline_sessions.storage.database import prepare_sqlite_file

    flask_app = Flask("probe", instance_path=str(tmp_path / "instance"))
    load_settings(flask_app, None)
    assert flask_app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/instance/sessions.db"
    prepare_sqlite_file(make_url(flask_app.config["SQLALCHEMY_DATABASE_URI"]))
    assert _mode(tmp_path / "instance") == 0o700
    assert _mode(tmp_path / "instance" / "sessions.db") == 0o600


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@sqlite_only
@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_a_new_database_and_its_wal_files_are_readable_by_the_owner_only(tmp_path, umask):
    path = tmp_path / "missing" / "folder" / "sessions.db"  # its folders are made too
    previous = os.umask(umask)
    try:
        app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{path}", "LOGIN_RATE_LIMIT": "off"})
        with app.app_context():
            seeding.store_seed(seed_file.parse_seed(SEED, 3600, utcnow()))
            # While a connection is open the -wal and -shm files exist (the last close removes them).
            with db.engine.connect() as connection:
                connection.exec_driver_sql("SELECT count(*) FROM sessions").scalar()
                modes = {end: _mode(Path(f"{path}{end}")) for end in ("", "-wal", "-shm")}
            db.engine.dispose()
    finally:
        os.umask(previous)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    assert _mode(path.parent) == 0o700


@sqlite_only
def test_an_existing_database_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "sessions.db"
    path.touch()
    path.chmod(0o640)  # the operator's choice, say for a backup group
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{path}", "LOGIN_RATE_LIMIT": "off"})
    with app.app_context():
        db.engine.dispose()
    assert _mode(path) == 0o640


@sqlite_only
def test_sqlite_runs_with_wal_fk_full_sync_and_busy_timeout(app):
    with app.app_context():
        connection = db.session.connection()
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 2  # FULL
        assert pragma("busy_timeout") >= 5000


def test_restart_keeps_data(app, make_app):
    again = make_app()
    client = again.test_client(use_cookies=False)
    assert client.get("/api/user/sessions", headers=cookie("cookie-abc")).status_code == 200


def test_no_secret_is_stored_in_clear(app, client, runner):
    login = client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"})
    session_token = login.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    api_token = runner.invoke(args=["create-user", "gil", "--password", "hunter2-pass"]).output.split()[-1]
    stored = _everything_stored(app)
    for secret in (session_token, api_token, "hunter2-pass", "wonderland", "tok-alice", "cookie-abc"):
        assert secret.encode() not in stored, secret


def _everything_stored(app) -> bytes:
    """Every row of every table as text; on SQLite, the database and WAL files as well."""
    with app.app_context():
        rows = [repr(row) for table in db.metadata.sorted_tables
                for row in db.session.execute(table.select())]
    with app.app_context():
        db.engine.dispose()  # no connection left holding the SQLite file
    stored = "\n".join(rows).encode()
    if BACKEND == "sqlite":
        path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
        with closing(sqlite3.connect(path)) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        stored += b"".join(Path(path + end).read_bytes() for end in ("", "-wal") if Path(path + end).exists())
    assert b"sess_abc123" in stored  # the dump holds the data, so the absences below mean something
    return stored


@sqlite_only
def test_with_test_control_commits_never_wait_for_the_disk(make_app):
    app = make_app(TEST_CONTROL=True)
    with app.app_context():
        connection = db.session.connection()
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 0  # OFF: nor do checkpoints
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
