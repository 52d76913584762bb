"""The SQLite store: where it lives, its settings, and that no secret is kept in clear."""

import sqlite3
from contextlib import closing
from pathlib import Path

from conftest import cookie

from app import create_app
from database import db


def test_default_database_file_is_made_on_first_start(tmp_path):
    from flask import Flask

    from settings import load_settings

    flask_app = Flask("probe", instance_path=str(tmp_path / "instance"))
    load_settings(flask_app, None)
    assert flask_app.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path}/instance/sessions.db"
    assert (tmp_path / "instance").is_dir()


def test_sqlite_runs_with_wal_fk_full_sync_and_busy_timeout(app):
    with app.app_context():
        connection = db.session.connection()
        pragma = lambda name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
        assert pragma("journal_mode") == "wal"
        assert pragma("foreign_keys") == 1
        assert pragma("synchronous") == 2  # FULL
        assert pragma("busy_timeout") >= 5000


def test_restart_keeps_data(app, tmp_path):
    again = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "LOGIN_RATE_LIMIT": "off"})
    client = again.test_client(use_cookies=False)
    assert client.get("/api/user/sessions", headers=cookie("cookie-abc")).status_code == 200


def test_no_secret_is_stored_in_clear(app, client, runner):
    login = client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"})
    session_token = login.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    api_token = runner.invoke(args=["create-user", "gil", "--password", "hunter2-pass"]).output.split()[-1]
    with app.app_context():
        db.engine.dispose()
    path = app.config["DATABASE_URL"].removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = b"".join(Path(path + suffix).read_bytes() for suffix in ("", "-wal") if Path(path + suffix).exists())
    for secret in (session_token, api_token, "hunter2-pass", "wonderland", "tok-alice", "cookie-abc"):
        assert secret.encode() not in raw, secret
