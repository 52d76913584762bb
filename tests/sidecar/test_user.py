"""The user routes of Zipline's clients: GET /api/user (who am I) and PATCH /api/user {username} (rename)."""

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import SEED, assert_error, cookie
from live_server import LiveServer
from sqlalchemy import select

from zipline_sessions.activity import events
from zipline_sessions.storage.database import db

USER = "/api/user"
SESSIONS = "/api/user/sessions"
LOGIN = "/api/auth/login"
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def zipline_client(make_seeded_app, **config):
    return make_seeded_app(ERROR_PROFILE="zipline-v4", **config).test_client(use_cookies=False)


def zipline_cookie(token: str) -> dict:
    return {"Cookie": f"zipline_session={token}"}


# GET /api/user

@pytest.mark.parametrize("headers", [{"Authorization": "tok-alice"}, {"Authorization": "Bearer tok-alice"},
                                     cookie("cookie-abc"), {"Authorization": "tok-alice", **cookie("cookie-bob")}])
def test_who_am_i_answers_the_user_login_answers(client, headers):
    response = client.get(USER, headers=headers)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_data() == b'{"user":{"id":1,"username":"alice"}}\n'  # as login's, and no token


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong"}, {"Authorization": "wrong", **cookie("cookie-abc")},
                                     cookie("cookie-old"), cookie("nope"), {"Authorization": ""}])
def test_who_am_i_refuses_what_the_sessions_routes_refuse(client, headers):
    assert_error(client.get(USER, headers=headers), 401, "Unauthorized", "Invalid login session")


def test_zipline_v4_answers_zipline_s_user_object(make_seeded_app):
    client = zipline_client(make_seeded_app)
    response = client.get(USER, headers=zipline_cookie("cookie-abc"))
    assert response.status_code == 200
    user = response.json["user"]
    assert list(user) == ["id", "username", "createdAt", "updatedAt", "role", "view", "avatar", "sessions",
                          "oauthProviders", "totpEnabled", "passkeys", "quota"]
    assert (user["id"], user["username"], user["role"]) == ("1", "alice", "USER")
    assert TIMESTAMP.match(user["createdAt"]) and user["updatedAt"] == user["createdAt"]
    assert (user["view"], user["avatar"], user["oauthProviders"], user["totpEnabled"], user["passkeys"],
            user["quota"]) == ({}, None, [], False, [], None)
    assert user["sessions"] == [  # live ones, oldest first, each with its user's id as Zipline's are
        {"id": "sess_def456", "createdAt": "2024-03-14T08:15:00.000Z", "ua": SEED["users"][0]["sessions"][1]["ua"],
         "client": "Mobile Safari", "device": "Mobile", "userId": "1"},
        {"id": "sess_abc123", "createdAt": "2024-03-15T10:30:00.000Z", "ua": SEED["users"][0]["sessions"][0]["ua"],
         "client": "Chrome", "device": "Desktop", "userId": "1"}]
    text = response.get_data(as_text=True)
    assert "cookie-abc" not in text and "tok-alice" not in text and "token" not in text


def test_zipline_v4_login_answers_the_same_user_object(make_seeded_app):
    app = make_seeded_app(ERROR_PROFILE="zipline-v4")
    app.test_cli_runner().invoke(args=["set-admin", "alice"])
    client = app.test_client(use_cookies=False)
    login = client.post(LOGIN, json={"username": "alice", "password": "wonderland"})
    assert login.status_code == 200
    mine = client.get(USER, headers={"Authorization": "tok-alice"}).json
    assert login.json == mine and mine["user"]["role"] == "ADMIN"


# PATCH /api/user {username}

def test_a_rename_keeps_every_session_and_token_and_tells_of_it(make_seeded_app, security_events):
    app = make_seeded_app(WEBHOOK_URL="http://127.0.0.1:9/hooks", WEBHOOK_SECRET="s" * 32)
    client = app.test_client(use_cookies=False)
    response = client.patch(USER, headers=cookie("cookie-abc"), json={"username": "alice.liddell"})
    assert response.status_code == 200
    assert response.json == {"user": {"id": 1, "username": "alice.liddell"}}
    assert "Set-Cookie" not in response.headers
    for headers in (cookie("cookie-abc"), cookie("cookie-def"), {"Authorization": "tok-alice"}):
        assert client.get(USER, headers=headers).json["user"]["username"] == "alice.liddell"
    (event,) = [e for e in security_events if e["event"] == "user.renamed"]
    assert (event["user"], event["previous"], event["userId"], event["bySession"]) == (
        "alice.liddell", "alice", 1, "sess_abc123")
    with app.app_context():
        (payload,) = [json.loads(row.payload) for row in db.session.execute(select(events.SessionEvent)).scalars()]
    assert (payload["type"], payload["user"], payload["previousUsername"]) == (
        "user.renamed", {"id": 1, "username": "alice.liddell"}, "alice")
    assert "session" not in payload
    assert client.post(LOGIN, json={"username": "alice.liddell", "password": "wonderland"}).status_code == 200
    assert client.post(LOGIN, json={"username": "alice", "password": "wonderland"}).status_code == 401


@pytest.mark.parametrize("headers", [{"Authorization": "tok-alice"}, cookie("cookie-abc")])
def test_a_token_or_a_cookie_may_rename(client, headers):
    assert client.patch(USER, headers=headers, json={"username": "Alice"}).json["user"]["username"] == "Alice"


@pytest.mark.parametrize(("username", "message"), [
    ("bob", "Username already exists"),
    ("alice", "Username already exists"),  # the caller's own name, as in Zipline
    ("", "username: Length must be between 1 and 255."),
    ("x" * 256, "username: Length must be between 1 and 255."),
    ("ali\x00ce", "username: Must not contain a NUL character."),
    (None, "username: Field may not be null."),
    (7, "username: Not a valid string."),
])
def test_a_taken_or_bad_name_is_refused_and_changes_nothing(client, username, message):
    response = client.patch(USER, headers=cookie("cookie-abc"), json={"username": username})
    assert_error(response, 400, "Bad Request", message)
    assert client.get(USER, headers=cookie("cookie-abc")).json["user"]["username"] == "alice"
    assert client.get(USER, headers=cookie("cookie-bob")).json["user"]["username"] == "bob"


@pytest.mark.parametrize("username", ["x" * 255, "Ålice 🐇", "a/b", " alice ", "ALICE"])
def test_any_name_creation_takes_is_taken_and_logs_in(client, username):
    response = client.patch(USER, headers=cookie("cookie-abc"), json={"username": username})
    assert response.status_code == 200 and response.json["user"]["username"] == username
    assert client.post(LOGIN, json={"username": username, "password": "wonderland"}).status_code == 200


def test_zipline_v4_answers_its_codes_and_an_empty_body_with_the_user(make_seeded_app):
    client = zipline_client(make_seeded_app)
    taken = client.patch(USER, headers=zipline_cookie("cookie-abc"), json={"username": "bob"})
    assert (taken.status_code, taken.get_data()) == (
        400, b'{"error":"E1038: Username already exists","code":1038,"statusCode":400}\n')
    empty = client.patch(USER, headers=zipline_cookie("cookie-abc"), json={})
    assert empty.status_code == 200
    assert empty.json == client.get(USER, headers=zipline_cookie("cookie-abc")).json
    renamed = client.patch(USER, headers=zipline_cookie("cookie-abc"), json={"username": "alice2"})
    assert renamed.json["user"]["username"] == "alice2" and renamed.json["user"]["id"] == "1"


def test_a_rename_and_a_password_change_go_together_or_not_at_all(client):
    response = client.patch(USER, headers=cookie("cookie-abc"),
                            json={"username": "bob", "password": "a new passphrase", "currentPassword": "wonderland"})
    assert_error(response, 400, "Bad Request", "Username already exists")  # checked first, as in Zipline
    wrong = client.patch(USER, headers=cookie("cookie-abc"),
                         json={"username": "alice2", "password": "a new passphrase", "currentPassword": "nope"})
    assert_error(wrong, 400, "Bad Request", "Current password is incorrect")
    assert client.get(USER, headers=cookie("cookie-abc")).json["user"]["username"] == "alice"
    both = client.patch(USER, headers=cookie("cookie-abc"),
                        json={"username": "alice2", "password": "a new passphrase", "currentPassword": "wonderland"})
    assert both.status_code == 200 and both.json["user"]["username"] == "alice2"
    assert client.post(LOGIN, json={"username": "alice2", "password": "a new passphrase"}).status_code == 200


def test_of_concurrent_renames_to_one_name_exactly_one_wins(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, SEED, workers=3).start()
    try:
        callers = [{"Authorization": "tok-alice"}, {"Authorization": "tok-bob"}] * 4
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda headers: server.request("PATCH", USER, headers, {"username": "carol"}),
                                    callers))
        codes = sorted(code for code, _, _ in answers)
        assert codes == [200] + [400] * 7, codes
        assert {body["message"] for code, _, body in answers if code == 400} == {"Username already exists"}
        names = {server.request("GET", USER, headers)[2]["user"]["username"] for headers in callers[:2]}
        assert "carol" in names and len(names) == 2
    finally:
        server.stop()


def test_events_never_carry_a_credential(client, security_events):
    client.patch(USER, headers=cookie("cookie-abc"), json={"username": "alice2"})
    assert "cookie-abc" not in json.dumps(security_events)
