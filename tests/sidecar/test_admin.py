"""Admins: /api/admin/users/<username>/sessions, the admin flag in the CLI and the seed file."""

import pytest
from conftest import cookie, write_json

from models import User
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db

SESSIONS = "/api/user/sessions"
ROOT = {"Authorization": "tok-root"}
ROOT_COOKIE = cookie("cookie-root")
ADMIN_SEED = {"users": [{"username": "root", "token": "tok-root", "admin": True,
                         "sessions": [{"id": "sess_root", "token": "cookie-root",
                                       "createdAt": "2024-02-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z"}]},
                        {"username": "a/b", "token": "tok-slash", "sessions": [{"id": "sess_slash"}]}]}
# The admin list always shows last activity (seeded sessions have none yet).
BOB_SESSION = {"id": "sess_bob1", "createdAt": "2024-03-16T00:00:00.000Z", "ua": "curl/8.5.0",
               "client": "curl", "device": "Unknown", "lastSeenAt": None, "ip": None, "location": None}


def url(username: str) -> str:
    return f"/api/admin/users/{username}/sessions"


@pytest.fixture
def app(app):
    """SEED plus an admin, root (user 3), and a user whose name holds a slash."""
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(ADMIN_SEED, app.config["TTL_SECONDS"], utcnow()))
    return app


def error(status: int, reason: str, message: str) -> dict:
    return {"statusCode": status, "error": reason, "message": message}


@pytest.mark.parametrize("headers", [ROOT, ROOT_COOKIE, {"Authorization": "Bearer tok-root"}])
def test_an_admin_lists_any_users_live_sessions_oldest_first(client, headers):
    response = client.get(url("alice"), headers=headers)
    assert response.status_code == 200
    assert response.json["user"] == {"id": 1, "username": "alice"}
    assert [s["id"] for s in response.json["sessions"]] == ["sess_def456", "sess_abc123"]  # sess_old expired
    assert client.get(url("bob"), headers=headers).json == {"user": {"id": 2, "username": "bob"},
                                                             "sessions": [BOB_SESSION]}


def test_admin_answers_are_never_cached(client):
    """A list of another user's sessions, a revocation, a refusal: no cache may keep them."""
    answers = [client.get(url("alice"), headers=ROOT), client.get(url("alice"), headers={"Authorization": "tok-bob"}),
               client.delete(url("bob"), headers=ROOT, json={"all": True})]
    assert [(answer.status_code, answer.headers.get("Cache-Control")) for answer in answers] == [
        (200, "no-store"), (403, "no-store"), (200, "no-store")]


def test_a_username_with_a_slash_is_reachable_percent_encoded(client):
    response = client.get(url("a%2Fb"), headers=ROOT)
    assert response.status_code == 200
    assert [s["id"] for s in response.json["sessions"]] == ["sess_slash"]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_the_caller_is_checked_first_then_the_admin_right_then_the_user(client, method):
    def call(username, headers):
        return client.open(url(username), method=method, headers=headers, json={"all": True})

    for headers in ({}, {"Authorization": "wrong", **ROOT_COOKIE}, cookie("cookie-old")):
        response = call("nobody", headers)
        assert (response.status_code, response.json) == (401, error(401, "Unauthorized", "Invalid login session"))
    for headers in ({"Authorization": "tok-alice"}, cookie("cookie-bob")):
        response = call("nobody", headers)
        assert (response.status_code, response.json) == (403, error(403, "Forbidden", "Admin only"))
        assert call("bob", headers).status_code == 403
    response = call("nobody", ROOT)
    assert (response.status_code, response.json) == (404, error(404, "Not Found", "User not found"))
    assert call("nul\x00name", ROOT).status_code == 404
    assert client.get(SESSIONS, headers=cookie("cookie-bob")).status_code == 200  # nothing revoked


def test_an_admin_revokes_one_session_of_a_user_and_gets_the_updated_list(client):
    response = client.delete(url("alice"), headers=ROOT, json={"sessionId": "sess_def456"})
    assert response.status_code == 200
    assert response.json["user"] == {"id": 1, "username": "alice"}
    assert [s["id"] for s in response.json["sessions"]] == ["sess_abc123"]
    assert client.get(SESSIONS, headers=cookie("cookie-def")).status_code == 401
    assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 200


def test_an_admin_revokes_all_sessions_of_a_user(client):
    response = client.delete(url("alice"), headers=ROOT_COOKIE, json={"all": True})
    assert response.status_code == 200
    assert response.json == {"user": {"id": 1, "username": "alice"}, "sessions": []}
    for token in ("cookie-abc", "cookie-def"):
        assert client.get(SESSIONS, headers=cookie(token)).status_code == 401
    assert client.get(SESSIONS, headers=cookie("cookie-bob")).status_code == 200
    assert client.get(SESSIONS, headers=ROOT_COOKIE).status_code == 200


@pytest.mark.parametrize(("body", "message"), [
    ({"sessionId": "sess_bob1"}, "Session not found in logged in sessions"),  # bob's, not alice's
    ({"sessionId": "sess_old"}, "Session not found in logged in sessions"),  # expired
    ({"all": False}, "Provide either sessionId or all: true."),
    ({"all": "true"}, "all: Not a valid boolean."),
])
def test_bad_bodies_are_refused_as_on_the_sessions_route(client, body, message):
    response = client.delete(url("alice"), headers=ROOT, json=body)
    assert (response.status_code, response.json) == (400, error(400, "Bad Request", message))
    assert len(client.get(url("alice"), headers=ROOT).json["sessions"]) == 2
    assert client.delete(url("alice"), headers=ROOT, data="x").status_code == 415


def test_an_admin_naming_themselves_keeps_the_session_they_call_from(client):
    response = client.delete(url("root"), headers=ROOT_COOKIE, json={"sessionId": "sess_root"})
    assert response.status_code == 400
    assert response.json["message"] == "Cannot delete current session, use log out instead."
    assert client.delete(url("root"), headers=ROOT_COOKIE, json={"all": True}).json["sessions"][0]["id"] == "sess_root"
    # With the token alone there is no current session: all means all.
    assert client.delete(url("root"), headers=ROOT, json={"all": True}).json["sessions"] == []


def test_every_admin_action_is_a_security_event_naming_admin_and_target(client, security_events):
    client.get(url("bob"), headers={"Authorization": "tok-alice"})
    client.get(url("bob"), headers=ROOT)
    client.delete(url("bob"), headers=ROOT_COOKIE, json={"all": True})
    events = [{k: v for k, v in event.items() if k not in ("time", "address")} for event in security_events]
    assert events == [
        {"event": "admin.denied", "user": "alice", "userId": 1, "target": "bob"},
        {"event": "admin.sessions.listed", "admin": "root", "adminId": 3, "user": "bob", "userId": 2},
        {"event": "admin.sessions.revoked", "admin": "root", "adminId": 3, "bySession": "sess_root",
         "user": "bob", "userId": 2, "revoked": ["sess_bob1"]},
    ]


def test_create_user_admin_and_set_admin(app, runner, client):
    result = runner.invoke(args=["create-user", "olga", "--admin"])
    assert result.exit_code == 0, result.output
    assert "Created admin 'olga'" in result.output
    token = result.output.rsplit(": ", 1)[1].strip()
    assert client.get(url("bob"), headers={"Authorization": token}).status_code == 200

    assert runner.invoke(args=["set-admin", "olga", "--revoke"]).exit_code == 0
    assert client.get(url("bob"), headers={"Authorization": token}).status_code == 403
    assert runner.invoke(args=["set-admin", "bob"]).output == "'bob' is now an admin.\n"
    assert client.get(url("alice"), headers={"Authorization": "tok-bob"}).status_code == 200
    result = runner.invoke(args=["set-admin", "nobody"])
    assert result.exit_code != 0 and "no user named 'nobody'" in result.output
    with app.app_context():
        admins = db.session.scalars(db.select(User.username).where(User.is_admin)).all()
    assert sorted(admins) == ["bob", "root"]


@pytest.mark.parametrize("value", ["true", 1, None, "yes"])
def test_the_seed_files_admin_flag_is_strictly_boolean(runner, tmp_path, value):
    document = {"users": [{"username": "eve", "admin": value}]}
    result = runner.invoke(args=["seed", str(write_json(tmp_path / "s.json", document))])
    assert result.exit_code != 0
    assert "users[0].admin: must be true or false" in result.output
