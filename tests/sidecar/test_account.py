"""Replace a leaked credential: PATCH /api/user/token, PATCH /api/user {password}, flask set-password."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import SEED, assert_error, cookie
from live_server import LiveServer

from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage.clock import utcnow

TOKEN = "/api/user/token"
USER = "/api/user"
SESSIONS = "/api/user/sessions"
LOGIN = "/api/auth/login"
NEW_PASSWORD = "a new passphrase"
COOKIE_ONLY = "Only a session cookie can change the password: log in first."
# A user whose name is long enough to be tried as a password.
MARGARET = {"users": [{"username": "Margaret99", "password": "old passphrase", "token": "tok-margaret",
                       "sessions": [{"id": "sess_m1", "token": "cookie-m1"}]}]}


@pytest.fixture
def app(app):
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(MARGARET, app.config["TTL_SECONDS"], utcnow()))
    return app


def logs_in(client, username, password) -> bool:
    return client.post(LOGIN, json={"username": username, "password": password}).status_code == 200


def status(client, headers) -> int:
    return client.get(SESSIONS, headers=headers).status_code


# Token reset

@pytest.mark.parametrize("headers", [{"Authorization": "tok-alice"}, {"Authorization": "Bearer tok-alice"},
                                     cookie("cookie-def"), {"Authorization": "tok-alice", **cookie("cookie-bob")}])
def test_a_token_reset_answers_a_new_token_and_refuses_the_old_one(client, headers, security_events):
    response = client.patch(TOKEN, headers=headers)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    new = response.json["token"]
    assert response.json == {"user": {"id": 1, "username": "alice"}, "token": new}
    assert len(new) >= 43 and new != "tok-alice"
    assert status(client, {"Authorization": "tok-alice"}) == 401
    assert client.get(SESSIONS, headers={"Authorization": new}).json["other"][0]["id"] == "sess_def456"
    assert status(client, {"Authorization": "tok-bob"}) == 200  # nobody else's token changed
    assert status(client, cookie("cookie-abc")) == 200  # sessions are not ended by a token reset
    (event,) = [e for e in security_events if e["event"] == "token.reset"]
    assert (event["user"], event["userId"]) == ("alice", 1)
    assert "tok-alice" not in json.dumps(security_events) and new not in json.dumps(security_events)


def test_each_reset_gives_a_different_token_and_only_the_newest_works(client):
    first = client.patch(TOKEN, headers={"Authorization": "tok-alice"}).json["token"]
    second = client.patch(TOKEN, headers={"Authorization": first}).json["token"]
    assert first != second
    assert (status(client, {"Authorization": first}), status(client, {"Authorization": second})) == (401, 200)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong"}, {"Authorization": "wrong", **cookie("cookie-abc")},
                                     cookie("cookie-old"), cookie("nope")])
def test_a_token_reset_without_a_valid_caller_is_refused_and_changes_nothing(client, headers):
    assert_error(client.patch(TOKEN, headers=headers), 401, "Unauthorized", "Invalid login session")
    assert status(client, {"Authorization": "tok-alice"}) == 200


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "tok-alice"}, cookie("cookie-abc")])
def test_the_stored_token_is_never_shown(client, method, headers):
    response = client.open(TOKEN, method=method, headers=headers)
    assert response.status_code == 404
    if method == "GET":
        assert_error(response, 404, "Not Found", "The API token is stored only as a hash and cannot be shown "
                                                 "again: PATCH /api/user/token issues a new one.")


def test_options_on_the_token_route_names_patch(client):
    response = client.options(TOKEN)
    assert response.status_code == 200
    assert "PATCH" in response.headers["Allow"]
    assert_error(client.post(TOKEN, headers={"Authorization": "tok-alice"}), 405, "Method Not Allowed")


# Password change

def test_a_password_change_ends_every_other_session_and_keeps_the_callers(client, security_events):
    response = client.patch(USER, headers=cookie("cookie-abc"), json={"password": NEW_PASSWORD})
    assert response.status_code == 200
    assert response.json == {"user": {"id": 1, "username": "alice"}}
    assert response.headers["Cache-Control"] == "no-store"
    assert status(client, cookie("cookie-def")) == 401
    listing = client.get(SESSIONS, headers=cookie("cookie-abc")).json
    assert (listing["current"]["id"], listing["other"]) == ("sess_abc123", [])
    assert status(client, cookie("cookie-bob")) == 200  # another user's session stays
    assert not logs_in(client, "alice", "wonderland")
    assert logs_in(client, "alice", NEW_PASSWORD)
    (event,) = [e for e in security_events if e["event"] == "password.changed"]
    assert (event["user"], event["bySession"], event["revoked"]) == ("alice", "sess_abc123", ["sess_def456", "sess_old"])  # the expired one too
    assert NEW_PASSWORD not in json.dumps(security_events)


def test_a_token_beside_the_callers_own_cookie_is_accepted(client):
    response = client.patch(USER, headers={"Authorization": "tok-alice", **cookie("cookie-abc")},
                            json={"password": NEW_PASSWORD})
    assert response.status_code == 200
    assert status(client, cookie("cookie-def")) == 401


@pytest.mark.parametrize(("headers", "message"), [
    ({"Authorization": "tok-alice"}, COOKIE_ONLY),
    ({"Authorization": "Bearer tok-alice"}, COOKIE_ONLY),
    ({"Authorization": "tok-alice", **cookie("cookie-bob")}, COOKIE_ONLY),  # someone else's cookie
    ({"Authorization": "wrong", **cookie("cookie-abc")}, "Invalid login session"),
    (cookie("cookie-old"), "Invalid login session"),
    ({}, "Invalid login session"),
])
def test_only_the_users_own_session_cookie_may_change_the_password(client, headers, message, security_events):
    assert_error(client.patch(USER, headers=headers, json={"password": NEW_PASSWORD}), 401, "Unauthorized", message)
    denied = [e for e in security_events if e["event"] == "password.denied"]
    assert len(denied) == (message == COOKIE_ONLY)
    assert_nothing_changed(client)


def assert_nothing_changed(client):
    assert status(client, cookie("cookie-def")) == 200
    assert logs_in(client, "alice", "wonderland")


@pytest.mark.parametrize(("body", "message"), [
    ({"password": "short"}, "password: Must be at least 8 characters."),
    ({"password": "x" * 1025}, "password: Must be at most 1024 characters."),
    ({"password": "before\x00after"}, "password: Must not contain a NUL character."),
    ('{"password": "\\ud800 lone surrogate"}', "Request body is not valid JSON."),  # orjson's refusal
    ({"password": 12345678}, "password: Not a valid string."),
    ({"password": None}, "password: Field may not be null."),
    ({}, "password: Missing data for required field."),
    ({"password": NEW_PASSWORD, "username": "alice2"}, "username: Cannot be changed here: only password can."),
    ({"password": NEW_PASSWORD, "avatar": None}, "avatar: Cannot be changed here: only password can."),
    ({"password": NEW_PASSWORD, "view": {"enabled": True}}, "view: Cannot be changed here: only password can."),
    ({"username": "alice2"}, ("password: Missing data for required field. username: Cannot be changed here: "
                              "only password can.")),
])
def test_a_bad_body_is_refused_naming_the_rule_or_field(client, body, message):
    raw = body if isinstance(body, str) else json.dumps(body)
    response = client.patch(USER, headers=cookie("cookie-abc"), data=raw, content_type="application/json")
    assert_error(response, 400, "Bad Request", message)
    assert_nothing_changed(client)


@pytest.mark.parametrize("password", ["Margaret99", "margaret99", "MARGARET99"])
def test_the_username_is_not_a_password(client, password):
    response = client.patch(USER, headers=cookie("cookie-m1"), json={"password": password})
    assert_error(response, 400, "Bad Request", "password: Must not be the username.")
    assert logs_in(client, "Margaret99", "old passphrase")


def test_unknown_fields_are_ignored_and_exactly_8_characters_will_do(client):
    response = client.patch(USER, headers=cookie("cookie-abc"), json={"password": "12345678", "theme": "dark"})
    assert response.status_code == 200
    assert logs_in(client, "alice", "12345678")


def test_the_caller_is_checked_before_the_body(client):
    assert_error(client.patch(USER, headers={"Authorization": "tok-alice"}, data="{"), 401, "Unauthorized")
    assert_error(client.patch(USER, headers=cookie("cookie-abc"), data="x"), 415, "Unsupported Media Type")


def test_password_changes_are_rate_limited_apart_from_logins(make_seeded_app, security_events):
    app = make_seeded_app(LOGIN_RATE_LIMIT="2 per minute")
    client = app.test_client(use_cookies=False)
    for attempt in range(2):
        assert client.patch(USER, headers=cookie("cookie-abc"), json={"password": f"{NEW_PASSWORD} {attempt}"}).status_code == 200
    refused = client.patch(USER, headers=cookie("cookie-abc"), json={"password": "never stored"})
    assert_error(refused, 429, "Too Many Requests", "Too many password changes, try again later.")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert (security_events[-1]["event"], security_events[-1]["user"]) == ("password.rate_limited", "alice")
    assert logs_in(client, "alice", f"{NEW_PASSWORD} 1")  # logins count apart, and nothing was changed


# The command line

def test_set_password_sets_it_and_ends_every_session(app, runner, client, security_events):
    result = runner.invoke(args=["set-password", "alice", "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    assert "Password of 'alice' set; ended 3 session(s)." in result.output  # sess_old, expired, included
    assert (status(client, cookie("cookie-abc")), status(client, cookie("cookie-def"))) == (401, 401)
    assert status(client, cookie("cookie-bob")) == 200
    assert status(client, {"Authorization": "tok-alice"}) == 200  # the token is replaced apart (PATCH /api/user/token)
    assert not logs_in(client, "alice", "wonderland")
    assert logs_in(client, "alice", NEW_PASSWORD)
    (event,) = [e for e in security_events if e["event"] == "password.changed"]
    assert (event["address"], event["revoked"]) == ("cli", ["sess_abc123", "sess_def456", "sess_old"])


def test_set_password_asks_twice_when_no_value_is_given(runner, client):
    result = runner.invoke(args=["set-password", "bob"], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert NEW_PASSWORD not in result.output
    assert logs_in(client, "bob", NEW_PASSWORD)  # bob had no password before


@pytest.mark.parametrize(("args", "message"), [
    (["set-password", "alice", "--password", "short"], "password: Must be at least 8 characters."),
    (["set-password", "Margaret99", "--password", "MARGARET99"], "password: Must not be the username."),
    (["set-password", "nobody", "--password", NEW_PASSWORD], "no user named 'nobody'"),
])
def test_set_password_refuses_a_bad_password_or_user_and_changes_nothing(runner, client, args, message):
    result = runner.invoke(args=args)
    assert result.exit_code == 1
    assert message in result.output
    assert_nothing_changed(client)
    assert logs_in(client, "Margaret99", "old passphrase")


# The real server

def test_a_reset_token_is_refused_by_every_worker_from_the_next_request_on(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, SEED, workers=3).start()
    try:
        assert len(server.worker_pids()) == 3
        old = {"Authorization": "tok-alice"}
        # Each request on a new connection, so the workers take turns; all have read with the old token.
        assert {server.request("GET", SESSIONS, old)[0] for _ in range(12)} == {200}
        status_code, headers, body = server.request("PATCH", TOKEN, old)
        assert (status_code, headers["Cache-Control"]) == (200, "no-store")
        new = {"Authorization": body["token"]}
        answers = [server.request("GET", SESSIONS, headers)[0] for _ in range(12) for headers in (old, new)]
        assert answers == [401, 200] * 12
        assert server.request("GET", "/api/auth/verify", old)[0] == 401
    finally:
        server.stop()


def test_of_concurrent_resets_with_one_token_exactly_one_wins(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, SEED, workers=3).start()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: server.request("PATCH", TOKEN, {"Authorization": "tok-alice"}), range(8)))
        winners = [body["token"] for code, _, body in answers if code == 200]
        assert len(winners) == 1, [code for code, _, _ in answers]
        assert sorted(code for code, _, _ in answers) == [200] + [401] * 7
        assert server.request("GET", SESSIONS, {"Authorization": winners[0]})[0] == 200
    finally:
        server.stop()
