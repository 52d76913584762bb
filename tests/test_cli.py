"""flask seed, create-user, list-sessions, revoke, purge-expired."""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import SEED, cookie, write_json

from models import LoginSession, User
from zipline_sessions.auth import reads
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db

SESSIONS = "/api/user/sessions"


def counts(app):
    with app.app_context():
        return db.session.query(User).count(), db.session.query(LoginSession).count()


def test_seed_loads_users_tokens_and_sessions(app, runner, client, tmp_path):
    document = {"users": [
        {"username": "zed", "token": "tok-zed", "sessions": [
            {"id": "sess_z1", "token": "cookie-z1", "ua": "curl/8.5.0", "createdAt": "2024-05-01T12:00:00+02:00"},
            {"ua": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
        ]},
        {"username": "quiet"},
    ]}
    result = runner.invoke(args=["seed", str(write_json(tmp_path / "s.json", document))])
    assert result.exit_code == 0, result.output
    assert "Seeded 2 users and 2 sessions." in result.output
    body = client.get(SESSIONS, headers={"Authorization": "tok-zed", **cookie("cookie-z1")}).json
    assert body["current"] == {"id": "sess_z1", "createdAt": "2024-05-01T10:00:00.000Z", "ua": "curl/8.5.0",
                               "client": "curl", "device": "Unknown"}
    generated = body["other"][0]
    assert generated["id"].startswith("sess_") and (generated["client"], generated["device"]) == ("Googlebot", "Bot")


BAD_FILES = {
    "not-an-object": ([], "the file must be a JSON object"),
    "no-users": ({"people": []}, "the file must be a JSON object"),
    "unknown-top-key": ({"users": [], "extra": 1}, "unknown field 'extra'"),
    "user-not-object": ({"users": ["alice"]}, "users[0]: must be an object, not a string"),
    "missing-username": ({"users": [{"token": "t"}]}, "users[0].username: is required"),
    "username-number": ({"users": [{"username": 5}]}, "users[0].username: must be a non-empty string, not 5"),
    "username-too-long": ({"users": [{"username": "u" * 256}]},
                          "users[0].username: 'uuuuu"),
    "empty-token": ({"users": [{"username": "a", "token": ""}]}, "users[0].token: must be a non-empty string\n"),
    "unknown-user-key": ({"users": [{"username": "a", "pasword": "x"}]}, "users[0]: unknown field 'pasword'"),
    "sessions-not-list": ({"users": [{"username": "a", "sessions": {}}]},
                          "users[0].sessions: must be an array, not an object"),
    "nul-username": ({"users": [{"username": "a\u0000b"}]},
                     "users[0].username: 'a\\x00b' must not contain a NUL character"),
    "nul-password": ({"users": [{"username": "a", "password": "pw\u0000"}]},
                     "users[0].password: must not contain a NUL character"),
    "nul-session-id": ({"users": [{"username": "a", "sessions": [{"id": "s\u0000"}]}]},
                       "users[0].sessions[0].id: 's\\x00' must not contain a NUL character"),
    "surrogate-username": ({"users": [{"username": "\ud800"}]},
                           "users[0].username: '\\ud800' is not valid Unicode text"),
    "expiry-before-creation": ({"users": [{"username": "a", "sessions": [
        {"createdAt": "2024-02-01T00:00:00Z", "expiresAt": "2024-01-01T00:00:00Z"}]}]},
        "users[0].sessions[0].expiresAt: '2024-01-01T00:00:00Z' is not after createdAt '2024-02-01T00:00:00Z'"),
    "expiry-at-creation": ({"users": [{"username": "a", "sessions": [
        {"createdAt": "2024-02-01T00:00:00Z", "expiresAt": "2024-02-01T00:00:00.000+00:00"}]}]},
        "users[0].sessions[0].expiresAt: '2024-02-01T00:00:00.000+00:00' is not after createdAt"),
    "created-in-the-future": ({"users": [{"username": "a", "sessions": [{"createdAt": "2999-01-01T00:00:00Z"}]}]},
                              "users[0].sessions[0].createdAt: '2999-01-01T00:00:00Z' is in the future"),
    "bad-date": ({"users": [{"username": "a", "sessions": [{"createdAt": "2024-13-45"}]}]},
                 "users[0].sessions[0].createdAt: '2024-13-45' is not an ISO 8601 date"),
    "date-number": ({"users": [{"username": "a", "sessions": [{"expiresAt": 1700000000}]}]},
                    "users[0].sessions[0].expiresAt"),
    "repeated-username": ({"users": [{"username": "a"}, {"username": "a"}]},
                          "users[1].username: 'a' repeats users[0].username"),
    "repeated-session-id": ({"users": [{"username": "a", "sessions": [{"id": "s1"}]},
                                       {"username": "b", "sessions": [{"id": "s1"}]}]},
                            "users[1].sessions[0].id: 's1' repeats users[0].sessions[0].id"),
    "repeated-token": ({"users": [{"username": "a", "token": "t"}, {"username": "b", "sessions": [{"token": "t"}]}]},
                       "users[1].sessions[0].token: token repeats users[0].token"),
    "over-the-session-cap": ({"users": [{"username": "new"}, {"username": "erin", "sessions": [{}] * 101}]},
                             "users[1] 'erin': 101 live sessions, more than SESSIONS_MAX_PER_USER (100)"),
    "existing-username": ({"users": [{"username": "new"}, {"username": "alice"}]},
                          "users[1].username: 'alice' already exists in the database"),
    "existing-session-id": ({"users": [{"username": "new", "sessions": [{"id": "sess_abc123"}]}]},
                            "users[0].sessions[0].id: 'sess_abc123' already exists in the database"),
    "existing-api-token": ({"users": [{"username": "new", "token": "tok-bob"}]},
                           "users[0].token: token already exists in the database"),
    "existing-session-token": ({"users": [{"username": "new", "sessions": [{"token": "cookie-abc"}]}]},
                               "users[0].sessions[0].token: token already exists in the database"),
}


@pytest.mark.parametrize(("document", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_seed_file_is_refused_whole(app, runner, tmp_path, document, message):
    before = counts(app)
    result = runner.invoke(args=["seed", str(write_json(tmp_path / "bad.json", document))])
    assert result.exit_code == 1
    assert "seed file refused, nothing stored" in result.output
    assert message in result.output
    assert counts(app) == before


def test_only_live_seeded_sessions_count_against_the_cap(make_app, tmp_path):
    runner = make_app(MAX_PER_USER=2).test_cli_runner()
    expired = [{"expiresAt": "2020-01-01T00:00:00Z"}] * 3
    fits = {"users": [{"username": "ida", "sessions": [{}, {}, *expired]}]}
    result = runner.invoke(args=["seed", str(write_json(tmp_path / "fits.json", fits))])
    assert result.exit_code == 0, result.output
    over = {"users": [{"username": "jo", "sessions": [{}, {}, {}]}]}
    result = runner.invoke(args=["seed", str(write_json(tmp_path / "over.json", over))])
    assert result.exit_code == 1
    assert "users[0] 'jo': 3 live sessions, more than SESSIONS_MAX_PER_USER (2)" in result.output


SECRET_FIELDS = {
    "api-token-too-long": {"users": [{"username": "a", "token": "secret-" + "s" * 1100}]},
    "session-token-surrogate": {"users": [{"username": "a", "sessions": [{"token": "secret-\udc80"}]}]},
    "repeated-token": {"users": [{"username": "a", "token": "secret-t"},
                                 {"username": "b", "sessions": [{"token": "secret-t"}]}]},
    "existing-token": {"users": [{"username": "new", "sessions": [{"token": "cookie-abc"}]}]},
    "password-too-long": {"users": [{"username": "a", "password": "secret-" + "p" * 1100}]},
    "password-number": {"users": [{"username": "a", "password": 12345678}]},
}


@pytest.mark.parametrize("document", SECRET_FIELDS.values(), ids=SECRET_FIELDS.keys())
def test_a_refusal_names_the_place_of_a_secret_but_never_its_value(app, runner, tmp_path, document):
    result = runner.invoke(args=["seed", str(write_json(tmp_path / "bad.json", document))])
    assert result.exit_code == 1 and "nothing stored" in result.output
    assert "token:" in result.output or "password:" in result.output
    for secret in ("secret-", "cookie-abc", "12345678"):
        assert secret not in result.output


def test_a_nul_in_a_token_or_ua_is_seeded_as_text_every_database_stores(app, runner, client, tmp_path):
    """A token is only hashed, a ua is cleaned: NUL in either is fine, on SQLite and PostgreSQL."""
    document = {"users": [{"username": "nul", "token": "tok\u0000nul",
                           "sessions": [{"token": "c\u0000nul", "ua": "curl/8.5.0\u0000x"}]}]}
    result = runner.invoke(args=["seed", str(write_json(tmp_path / "nul.json", document))])
    assert result.exit_code == 0, result.output
    with app.app_context():
        rows = reads.list_sessions(db.session.query(User).filter_by(username="nul").one().id)
    assert [row.ua for row in rows] == ["curl/8.5.0\ufffdx"]


def test_seed_refuses_unreadable_and_malformed_files(app, runner, tmp_path):
    (tmp_path / "broken.json").write_text('{"users": [')
    for path in (tmp_path / "missing.json", tmp_path / "broken.json"):
        result = runner.invoke(args=["seed", str(path)])
        assert result.exit_code == 1 and "nothing stored" in result.output


def test_seeding_the_same_file_twice_is_refused(app, runner, tmp_path):
    path = write_json(tmp_path / "again.json", SEED)
    result = runner.invoke(args=["seed", str(path)])
    assert result.exit_code == 1 and "users[0].username: 'alice' already exists" in result.output


def test_a_past_expiry_seeds_an_expired_session(app, runner, client, tmp_path):
    document = {"users": [{"username": "old", "token": "tok-old",
                           "sessions": [{"id": "sess_expired", "token": "c-old",
                                         "expiresAt": "2020-01-01T00:00:00Z"}]}]}
    assert runner.invoke(args=["seed", str(write_json(tmp_path / "o.json", document))]).exit_code == 0
    assert client.get(SESSIONS, headers={"Authorization": "tok-old"}).json == {"current": None, "other": []}
    with app.app_context():
        stored = db.session.get(LoginSession, "sess_expired")
        # Made a TTL before it expired, as a login then would have made it.
        assert (stored.created_at, stored.expires_at) == (datetime(2019, 12, 25), datetime(2020, 1, 1))
    assert client.get(SESSIONS, headers=cookie("c-old")).status_code == 401


def test_seeded_dates_default_around_the_given_one(app, runner, tmp_path):
    document = {"users": [{"username": "dates", "sessions": [
        {"id": "sess_future_expiry", "expiresAt": "2099-01-01T00:00:00Z"},
        {"id": "sess_past_creation", "createdAt": "2024-01-01T00:00:00Z"},
    ]}]}
    before = utcnow()
    assert runner.invoke(args=["seed", str(write_json(tmp_path / "d.json", document))]).exit_code == 0
    with app.app_context():
        future_expiry = db.session.get(LoginSession, "sess_future_expiry")
        past_creation = db.session.get(LoginSession, "sess_past_creation")
    assert before <= future_expiry.created_at <= utcnow() and future_expiry.expires_at == datetime(2099, 1, 1)
    ttl = timedelta(seconds=app.config["TTL_SECONDS"])
    assert past_creation.created_at == datetime(2024, 1, 1)
    assert before + ttl <= past_creation.expires_at <= utcnow() + ttl


def test_create_user_prints_a_token_once_that_works(app, runner, client):
    result = runner.invoke(args=["create-user", "erin"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().rsplit(" ", 1)[1]
    assert len(token) >= 43
    assert client.get(SESSIONS, headers={"Authorization": token}).json == {"current": None, "other": []}
    # Token-only user: cannot log in with a password.
    assert client.post("/api/auth/login", json={"username": "erin", "password": "x"}).status_code == 401
    again = runner.invoke(args=["create-user", "erin"])
    assert again.exit_code == 1 and "already exists" in again.output


def test_concurrent_create_users_of_one_name_make_one_user(app, database_url):
    """Real processes at once: one creates the user, the others say it exists (no traceback)."""
    root = Path(__file__).resolve().parent.parent
    flask = Path(sys.executable).parent / "flask"
    env = {**os.environ, "SESSIONS_DATABASE_URL": database_url}
    runs = [subprocess.Popen([str(flask), "--app", "app", "create-user", "zed"], cwd=root, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [(run.wait(timeout=60), run.stdout.read()) for run in runs]
    for run in runs:
        run.stdout.close()
    assert sorted(code for code, _ in outputs) == [0, 1, 1, 1], outputs
    for code, output in outputs:
        assert "Traceback" not in output
        assert ("Created user 'zed'" if code == 0 else "a user named 'zed' already exists") in output
    with app.app_context():
        assert db.session.query(User).filter_by(username="zed").count() == 1


def test_create_user_with_a_password_can_log_in(app, runner, client):
    result = runner.invoke(args=["create-user", "fay", "--password", "s3cret"])
    assert result.exit_code == 0
    assert client.post("/api/auth/login", json={"username": "fay", "password": "s3cret"}).status_code == 200


def test_list_sessions_prints_live_sessions(runner):
    result = runner.invoke(args=["list-sessions", "alice"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["sess_def456", "sess_abc123"]
    as_json = json.loads(runner.invoke(args=["list-sessions", "alice", "--json"]).output)
    assert as_json[1] == {"id": "sess_abc123", "createdAt": "2024-03-15T10:30:00.000Z",
                          "ua": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/122.0.0.0",
                          "client": "Chrome", "device": "Desktop", "lastSeenAt": None, "ip": None,
                          "location": None}
    unknown = runner.invoke(args=["list-sessions", "nobody"])
    assert unknown.exit_code == 1 and "no user named 'nobody'" in unknown.output


def test_revoke_one_and_all(runner, client):
    assert runner.invoke(args=["revoke", "alice", "sess_def456"]).exit_code == 0
    assert client.get(SESSIONS, headers=cookie("cookie-def")).status_code == 401
    assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 200
    missing = runner.invoke(args=["revoke", "alice", "sess_bob1"])
    assert missing.exit_code == 1 and "no live session" in missing.output
    assert client.get(SESSIONS, headers=cookie("cookie-bob")).status_code == 200
    assert runner.invoke(args=["revoke", "alice"]).exit_code == 2
    assert runner.invoke(args=["revoke", "alice", "--all"]).exit_code == 0
    assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 401


def test_purge_expired_deletes_only_expired_sessions(app, runner):
    result = runner.invoke(args=["purge-expired"])
    assert result.exit_code == 0 and "Purged 1 expired session(s)." in result.output
    with app.app_context():
        assert db.session.get(LoginSession, "sess_old") is None
        assert db.session.get(LoginSession, "sess_abc123") is not None


BAD_ARGUMENTS = {
    "nul": ("a\x00b", "'a\\x00b' must not contain a NUL character"),
    "undecodable-byte": ("caf\udce9", "'caf\\udce9' not valid Unicode text"),  # argv b"caf\xe9", not UTF-8
    "too-long": ("u" * 256, "is longer than 255 characters"),
}


@pytest.mark.parametrize(("value", "message"), BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
@pytest.mark.parametrize("command", [["create-user", "{}"], ["list-sessions", "{}"], ["revoke", "{}", "--all"],
                                     ["revoke", "alice", "{}"]])
def test_cli_text_arguments_are_refused_alike_on_every_database(app, runner, command, value, message):
    before = counts(app)
    result = runner.invoke(args=[value if part == "{}" else part for part in command])
    assert result.exit_code == 2, result.output
    assert "Invalid value" in result.output and message in result.output
    assert isinstance(result.exception, SystemExit)  # a usage error, not a database error
    assert counts(app) == before
    assert runner.invoke(args=["list-sessions", "alice"]).output.count("\n") == 2


def test_a_password_with_nul_is_refused_without_echoing_it(app, runner):
    before = counts(app)
    result = runner.invoke(args=["create-user", "nul", "--password"], input="se\x00cret\nse\x00cret\n")
    assert result.exit_code != 0, result.output
    assert "Error: must not contain a NUL character" in result.output and "cret" not in result.output
    assert counts(app) == before


def test_an_empty_password_still_means_none(app, runner, client):
    assert runner.invoke(args=["create-user", "nopw", "--password", ""]).exit_code == 0
    assert client.post("/api/auth/login", json={"username": "nopw", "password": "x"}).status_code == 401
