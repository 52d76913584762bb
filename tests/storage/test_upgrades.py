"""Upgrades across releases: a database made at each earlier revision, holding users, passwords,
API tokens and sessions as that revision stored them, is upgraded by this code with nothing lost.
On SQLite, and on PostgreSQL when the suite runs there (SESSIONS_TEST_POSTGRES_URL)."""

from datetime import datetime

import pytest
from argon2 import PasswordHasher
from conftest import cookie
from sqlalchemy import MetaData, func, select
from werkzeug.security import generate_password_hash

from zipline_sessions.security.credentials import hash_token
from zipline_sessions.storage.database import db
from zipline_sessions.storage.schema import _script_directory, migrate

# Every revision but the newest, oldest first (a revision added later joins by itself).
EARLIER = [script.revision for script in reversed(list(_script_directory().walk_revisions()))][:-1]
NOW = datetime(2026, 1, 1, 12, 0, 0)
LIVE_UNTIL = datetime(2099, 1, 1)
PASSWORDS = {"alice": "alice's long password", "carol": "carol's older password"}
USERS = [
    # alice: argon2id; carol: a werkzeug scrypt hash, as the first releases made; bob: token only.
    {"id": 1, "username": "alice", "password_hash": PasswordHasher().hash(PASSWORDS["alice"]),
     "api_token_hash": hash_token("tok-alice"), "created_at": NOW, "is_admin": True},
    {"id": 2, "username": "bob", "password_hash": None, "api_token_hash": hash_token("tok-bob"),
     "created_at": NOW, "is_admin": False},
    {"id": 3, "username": "carol", "password_hash": generate_password_hash(PASSWORDS["carol"], method="scrypt"),
     "api_token_hash": None, "created_at": NOW, "is_admin": False},
]
SESSIONS = [
    {"id": f"sess_{user}{n}", "token_hash": hash_token(f"cookie-{user}{n}"), "user_id": user_id,
     "created_at": datetime(2025, 12, n + 1), "expires_at": LIVE_UNTIL, "ua": "curl/8.5.0", "client": "curl",
     "device": "Unknown", "last_seen_at": NOW, "ip": "203.0.113.9"}
    for user, user_id in (("alice", 1), ("bob", 2), ("carol", 3)) for n in range(3)
]


def test_there_is_a_test_per_earlier_revision():
    assert EARLIER[:6] == ["0001", "0002", "0003", "0004", "0005", "0006"]


@pytest.mark.parametrize("revision", EARLIER)
def test_a_database_made_at_an_earlier_revision_upgrades_with_nothing_lost(make_app, revision):
    old = make_app(AUTO_MIGRATE=False)
    with old.app_context():
        migrate(revision)
        _store_as_that_revision_would()

    upgraded = make_app()  # auto-migrate on: this start upgrades
    assert upgraded.extensions["migrated_at_start"].before == revision
    with upgraded.app_context():
        assert db.session.scalar(select(func.count()).select_from(db.metadata.tables["users"])) == 3
        assert db.session.scalar(select(func.count()).select_from(db.metadata.tables["sessions"])) == 9
        db.session.commit()
    client = upgraded.test_client(use_cookies=False)
    for user in ("alice", "bob", "carol"):
        credentials = cookie(f"cookie-{user}1")
        if user != "carol":
            credentials["Authorization"] = f"tok-{user}"  # carol has no token
        listed = client.get("/api/user/sessions", headers=credentials)
        assert listed.status_code == 200, (user, listed.json)
        assert listed.json["current"]["id"] == f"sess_{user}1"
        assert [s["id"] for s in listed.json["other"]] == [f"sess_{user}0", f"sess_{user}2"]
        verified = client.get("/api/auth/verify", headers=cookie(f"cookie-{user}0"))
        assert verified.status_code == 200 and verified.headers["Remote-User"] == user
    for user, password in PASSWORDS.items():
        login = client.post("/api/auth/login", json={"username": user, "password": password})
        assert login.status_code == 200, (user, login.json)
    # The admin right exists from 0005 on; a user stored before it is no admin.
    admin = client.get("/api/admin/users/bob/sessions", headers={"Authorization": "tok-alice"})
    assert admin.status_code == (200 if revision >= "0005" else 403)
    assert client.get("/api/health").json == {"status": "ok"}


def _store_as_that_revision_would() -> None:
    """Insert USERS and SESSIONS with the columns the database has at its revision."""
    tables = MetaData()
    tables.reflect(bind=db.engine, only=["users", "sessions"])
    with db.engine.begin() as connection:
        for name, rows in (("users", USERS), ("sessions", SESSIONS)):
            table = tables.tables[name]
            connection.execute(table.insert(), [{key: row[key] for key in row if key in table.c} for row in rows])
        if db.engine.dialect.name == "postgresql":  # ids given by hand: the sequence goes past them
            connection.exec_driver_sql("SELECT setval('users_id_seq', 3)")
