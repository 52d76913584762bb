"""/api/auth/verify: the same credentials as the sessions routes, answered in headers."""

from urllib.parse import unquote

import pytest
from conftest import cookie, write_json

from models import LoginSession
from zipline_sessions.storage.database import db

VERIFY = "/api/auth/verify"
SESSIONS = "/api/user/sessions"
DENIED = {"statusCode": 401, "error": "Unauthorized", "message": "Invalid login session"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def user_headers(response) -> dict:
    return {name: value for name, value in response.headers.items()
            if name in ("Remote-User", "X-Zipline-User-Id", "X-Zipline-Username", "X-Zipline-Session-Id")}


@pytest.mark.parametrize("method", METHODS)
def test_a_session_cookie_is_allowed_with_the_user_and_its_session(client, method):
    response = client.open(VERIFY, method=method, headers=cookie("cookie-abc"))
    assert response.status_code == 200
    assert response.get_data() == b""
    assert user_headers(response) == {"Remote-User": "alice", "X-Zipline-User-Id": "1",
                                      "X-Zipline-Username": "alice", "X-Zipline-Session-Id": "sess_abc123"}
    assert response.headers["Cache-Control"] == "no-store"
    assert "Content-Type" not in response.headers


@pytest.mark.parametrize("authorization", ["tok-bob", "Bearer tok-bob"])
def test_a_token_is_allowed_without_a_session(client, authorization):
    response = client.get(VERIFY, headers={"Authorization": authorization})
    assert response.status_code == 200
    assert user_headers(response) == {"Remote-User": "bob", "X-Zipline-User-Id": "2", "X-Zipline-Username": "bob"}


def test_with_token_and_cookie_the_token_decides_and_the_session_only_if_it_is_that_users(client):
    own = client.get(VERIFY, headers={"Authorization": "tok-alice", **cookie("cookie-def")})
    assert user_headers(own)["X-Zipline-Session-Id"] == "sess_def456"
    foreign = client.get(VERIFY, headers={"Authorization": "tok-alice", **cookie("cookie-bob")})
    assert foreign.status_code == 200
    assert user_headers(foreign) == {"Remote-User": "alice", "X-Zipline-User-Id": "1", "X-Zipline-Username": "alice"}


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "wrong"},
    {"Authorization": ""},
    {"Authorization": "wrong", **cookie("cookie-abc")},  # a wrong token beats a good cookie
    cookie("nope"),
    cookie("sess_abc123"),  # the public id is never a credential
    cookie("cookie-old"),  # expired
    {"Remote-User": "alice"},  # a name is not a credential
], ids=["neither", "wrong-token", "empty-token", "wrong-token-good-cookie", "unknown-cookie", "id-as-cookie",
        "expired-cookie", "remote-user-header"])
@pytest.mark.parametrize("method", METHODS)
def test_anything_else_is_denied_in_the_contract_shape(client, headers, method):
    response = client.open(VERIFY, method=method, headers=headers)
    assert response.status_code == 401
    assert response.json == DENIED
    assert response.headers["Cache-Control"] == "no-store"
    assert "Remote-User" not in response.headers


def test_an_expired_cookie_is_refused_and_nothing_is_written(app, client):
    assert client.get(VERIFY, headers=cookie("cookie-old")).status_code == 401
    with app.app_context():
        assert db.session.get(LoginSession, "sess_old") is not None  # not purged: verify never writes


def test_a_revoked_session_is_denied_on_the_next_request(client):
    assert client.get(VERIFY, headers=cookie("cookie-def")).status_code == 200
    assert client.delete(SESSIONS, headers=cookie("cookie-abc"), json={"all": True}).status_code == 200
    assert client.get(VERIFY, headers=cookie("cookie-def")).status_code == 401
    assert client.get(VERIFY, headers=cookie("cookie-abc")).status_code == 200
    assert client.post("/api/auth/logout", headers=cookie("cookie-abc")).status_code == 200
    assert client.get(VERIFY, headers=cookie("cookie-abc")).status_code == 401


def test_options_is_the_preflight_and_authenticates_nobody(client):
    response = client.options(VERIFY, headers=cookie("cookie-abc"))
    assert response.status_code == 200
    assert user_headers(response) == {}
    assert response.get_data() == b""


def test_head_answers_like_get(client):
    assert client.head(VERIFY, headers=cookie("cookie-abc")).headers["Remote-User"] == "alice"
    assert client.head(VERIFY).status_code == 401


def test_the_body_is_never_read(client):
    # A body over the limit, not JSON: verify answers from the credentials alone.
    response = client.post(VERIFY, headers={"Authorization": "tok-alice", "Content-Type": "text/plain"},
                           data=b"x" * 100_000)
    assert response.status_code == 200


@pytest.mark.parametrize("username", ["zoë", "日本", "a b", "50%", "tab\there", "line\r\nX-Injected: 1"])
def test_names_that_are_not_plain_ascii_come_percent_encoded(app, client, runner, tmp_path, username):
    document = {"users": [{"username": username, "token": "tok-odd", "sessions": [{"id": f"sess {username}",
                                                                                  "token": "cookie-odd"}]}]}
    assert runner.invoke(args=["seed", str(write_json(tmp_path / "odd.json", document))]).exit_code == 0
    response = client.get(VERIFY, headers=cookie("cookie-odd"))
    assert response.status_code == 200
    headers = user_headers(response)
    assert all(value.isascii() and value.isprintable() and " " not in value for value in headers.values())
    assert unquote(headers["Remote-User"]) == unquote(headers["X-Zipline-Username"]) == username
    assert unquote(headers["X-Zipline-Session-Id"]) == f"sess {username}"
    assert "X-Injected" not in response.headers


def test_verify_is_not_rate_limited(make_seeded_app):


    app = make_seeded_app(LOGIN_RATE_LIMIT="2 per minute")
    client = app.test_client(use_cookies=False)
    assert [client.get(VERIFY, headers={"Authorization": "wrong"}).status_code for _ in range(10)] == [401] * 10
    assert client.get(VERIFY, headers={"Authorization": "tok-alice"}).status_code == 200
