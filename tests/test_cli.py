"""flask seed, create-user, list-sessions, revoke, purge-expired."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SEED, cookie, write_json

from database import db
from models import LoginSession, User

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
    "user-not-object": ({"users": ["alice"]}, "users[0]: must be an object"),
    "missing-username": ({"users": [{"token": "t"}]}, "users[0].username: is required"),
    "username-number": ({"users": [{"username": 5}]}, "users[0].username: must be a non-empty string"),
    "empty-token": ({"users": [{"username": "a", "token": ""}]}, "users[0].token: must be a non-empty string"),
    "unknown-user-key": ({"users": [{"username": "a", "pasword": "x"}]}, "users[0]: unknown field 'pasword'"),
    "sessions-not-list": ({"users": [{"username": "a", "sessions": {}}]}, "users[0].sessions: must be an array"),
    "bad-date": ({"users": [{"username": "a", "sessions": [{"createdAt": "2024-13-45"}]}]},
                 "users[0].sessions[0].createdAt: '2024-13-45' is not an ISO 8601 date"),
    "date-number": ({"users": [{"username": "a", "sessions": [{"expiresAt": 1700000000}]}]},
                    "users[0].sessions[0].expiresAt"),
    "repeated-username": ({"users": [{"username": "a"}, {"username": "a"}]},
                          "users[1].username: username repeats users[0].username"),
    "repeated-session-id": ({"users": [{"username": "a", "sessions": [{"id": "s1"}]},
                                       {"username": "b", "sessions": [{"id": "s1"}]}]},
                            "users[1].sessions[0].id: session id repeats users[0].sessions[0].id"),
    "repeated-token": ({"users": [{"username": "a", "token": "t"}, {"username": "b", "sessions": [{"token": "t"}]}]},
                       "users[1].sessions[0].token: token repeats users[0].token"),
    "existing-username": ({"users": [{"username": "new"}, {"username": "alice"}]},
                          "users[1].username: username already exists in the database"),
    "existing-session-id": ({"users": [{"username": "new", "sessions": [{"id": "sess_abc123"}]}]},
                            "users[0].sessions[0].id: session id already exists in the database"),
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


def test_seed_refuses_unreadable_and_malformed_files(app, runner, tmp_path):
    (tmp_path / "broken.json").write_text('{"users": [')
    for path in (tmp_path / "missing.json", tmp_path / "broken.json"):
        result = runner.invoke(args=["seed", str(path)])
        assert result.exit_code == 1 and "nothing stored" in result.output


def test_seeding_the_same_file_twice_is_refused(app, runner, tmp_path):
    path = write_json(tmp_path / "again.json", SEED)
    result = runner.invoke(args=["seed", str(path)])
    assert result.exit_code == 1 and "users[0].username: username already exists" in result.output


def test_a_past_expiry_seeds_an_expired_session(app, runner, client, tmp_path):
    document = {"users": [{"username": "old", "token": "tok-old",
                           "sessions": [{"token": "c-old", "expiresAt": "2020-01-01T00:00:00Z"}]}]}
    assert runner.invoke(args=["seed", str(write_json(tmp_path / "o.json", document))]).exit_code == 0
    assert client.get(SESSIONS, headers={"Authorization": "tok-old"}).json == {"current": None, "other": []}
    assert client.get(SESSIONS, headers=cookie("c-old")).status_code == 401


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
                          "client": "Chrome", "device": "Desktop", "lastSeenAt": None, "ip": None}
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
