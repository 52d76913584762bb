"""Replace a leaked credential: PATCH /api/user/token, PATCH /api/user {password}, flask set-password and
revoke-token."""

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

ALICE_PASSWORD = {"currentPassword": "wonderland"}


@pytest.mark.parametrize(("headers", "body"), [({"Authorization": "tok-alice"}, None),
                                               ({"Authorization": "Bearer tok-alice"}, None),
                                               (cookie("cookie-def"), ALICE_PASSWORD),
                                               ({"Authorization": "tok-alice", **cookie("cookie-bob")}, None)])
def test_a_token_reset_answers_a_new_token_and_refuses_the_old_one(client, headers, body, security_events):
    response = client.patch(TOKEN, headers=headers, json=body)
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
    assert "wonderland" not in json.dumps(security_events)


@pytest.mark.parametrize(("body", "message"), [
    (None, "Current password is required to reset the API token"),
    ({}, "Current password is required to reset the API token"),
    ({"currentPassword": ""}, "Current password is required to reset the API token"),
    ({"currentPassword": "wrong"}, "Current password is incorrect"),
    ({"currentPassword": "wonder\x00land"}, "currentPassword: Must not contain a NUL character."),
])
def test_a_cookie_alone_must_bring_the_current_password_to_reset_the_token(client, body, message):
    response = client.patch(TOKEN, headers=cookie("cookie-abc"), json=body)
    assert_error(response, 400, "Bad Request", message)
    assert status(client, {"Authorization": "tok-alice"}) == 200


def test_a_wrong_current_password_is_counted_with_the_logins(make_seeded_app, security_events):
    client = make_seeded_app(LOGIN_RATE_LIMIT="2 per minute").test_client(use_cookies=False)
    assert not logs_in(client, "alice", "guess 1")
    assert client.patch(TOKEN, headers=cookie("cookie-abc"), json={"currentPassword": "guess 2"}).status_code == 400
    refused = client.patch(TOKEN, headers=cookie("cookie-abc"), json=ALICE_PASSWORD)
    assert_error(refused, 429, "Too Many Requests", "Too many login attempts, try again later.")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert security_events[-1]["event"] == "token.rate_limited"
    assert status(client, {"Authorization": "tok-alice"}) == 200


def test_resets_are_limited_per_user_whatever_the_address(make_seeded_app, security_events):
    app = make_seeded_app(TOKEN_RESET_RATE_LIMIT="2 per hour", TEST_CONTROL=True)
    client = app.test_client(use_cookies=False)
    token = "tok-alice"
    for address in ("10.0.0.1", "10.0.0.2"):
        response = client.patch(TOKEN, headers={"Authorization": token}, environ_base={"REMOTE_ADDR": address})
        assert response.status_code == 200
        token = response.json["token"]
        assert client.post("/__test__/clock", json={"advance": 2}).status_code == 200
    refused = client.patch(TOKEN, headers={"Authorization": token}, environ_base={"REMOTE_ADDR": "10.0.0.3"})
    assert_error(refused, 429, "Too Many Requests", "Too many token resets, try again later.")
    assert 3500 < int(refused.headers["Retry-After"]) <= 3600
    assert (security_events[-1]["event"], security_events[-1]["key"]) == ("token.rate_limited", "user")
    assert status(client, {"Authorization": token}) == 200  # the refused reset changed nothing
    assert client.patch(TOKEN, headers={"Authorization": "tok-bob"}).status_code == 200  # bob counts apart


def test_a_flood_of_resets_is_refused_by_reads_and_logged_once(make_seeded_app, security_events):
    client = make_seeded_app(TOKEN_RESET_RATE_LIMIT="1 per hour").test_client(use_cookies=False)
    token = client.patch(TOKEN, headers={"Authorization": "tok-alice"}).json["token"]
    answers = [client.patch(TOKEN, headers={"Authorization": token}).status_code for _ in range(20)]
    assert answers == [429] * 20
    assert [e["event"] for e in security_events].count("token.rate_limited") == 1  # the first refusal only
    assert status(client, {"Authorization": token}) == 200


def test_a_second_reset_within_a_second_is_refused(make_seeded_app):
    client = make_seeded_app(TEST_CONTROL=True).test_client(use_cookies=False)
    client.post("/__test__/clock", json={"set": "2030-01-01T00:00:00Z"})  # held: it moves only when told
    first = client.patch(TOKEN, headers={"Authorization": "tok-alice"}).json["token"]
    client.post("/__test__/clock", json={"advance": 0.999})
    refused = client.patch(TOKEN, headers={"Authorization": first})
    assert_error(refused, 429, "Too Many Requests",
                 "The API token was reset less than a second ago, try again in a second.")
    assert refused.headers["Retry-After"] == "1"
    assert status(client, {"Authorization": first}) == 200
    client.post("/__test__/clock", json={"advance": 0.001})
    second = client.patch(TOKEN, headers={"Authorization": first}).json["token"]
    assert first != second
    assert (status(client, {"Authorization": first}), status(client, {"Authorization": second})) == (401, 200)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong"}, {"Authorization": "wrong", **cookie("cookie-abc")},
                                     cookie("cookie-old"), cookie("nope")])
def test_a_token_reset_without_a_valid_caller_is_refused_and_changes_nothing(client, headers):
    assert_error(client.patch(TOKEN, headers=headers, json=ALICE_PASSWORD), 401, "Unauthorized", "Invalid login session")
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


@pytest.mark.parametrize(("path", "body", "message"), [(TOKEN, None, "Cross-site token reset refused"),
                                                       (USER, {"username": "mallory"}, "Cross-site account change refused")])
@pytest.mark.parametrize("site", [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}])
def test_another_site_cannot_reset_the_token_or_change_the_account(client, path, body, message, site):
    response = client.patch(path, headers={"Authorization": "tok-alice", **site}, json=body)
    assert_error(response, 403, "Forbidden", message)
    assert status(client, {"Authorization": "tok-alice"}) == 200
    assert client.get(USER, headers={"Authorization": "tok-alice"}).json["user"]["username"] == "alice"


# Password change

def change_password(client, headers, password=NEW_PASSWORD, current="wonderland"):
    return client.patch(USER, headers=headers, json={"password": password, "currentPassword": current})


def new_cookie(response) -> dict:
    """The session cookie a response sets, as request headers."""
    value = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    return cookie(value)


def test_a_password_change_ends_every_other_session_and_renews_the_callers(client, security_events):
    response = change_password(client, cookie("cookie-abc"))
    assert response.status_code == 200
    assert response.json == {"user": {"id": 1, "username": "alice"}}
    assert response.headers["Cache-Control"] == "no-store"
    set_cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    assert status(client, cookie("cookie-abc")) == 401  # the old cookie names nothing from now on
    assert status(client, cookie("cookie-def")) == 401
    listing = client.get(SESSIONS, headers=new_cookie(response)).json
    assert (listing["current"]["id"], listing["other"]) == ("sess_abc123", [])  # the same session, renewed
    assert status(client, cookie("cookie-bob")) == 200  # another user's session stays
    assert status(client, {"Authorization": "tok-alice"}) == 200  # the API token stays: scripts keep working
    assert not logs_in(client, "alice", "wonderland")
    assert logs_in(client, "alice", NEW_PASSWORD)
    (event,) = [e for e in security_events if e["event"] == "password.changed"]
    assert (event["user"], event["bySession"], event["revoked"]) == ("alice", "sess_abc123", ["sess_def456", "sess_old"])  # the expired one too
    assert NEW_PASSWORD not in json.dumps(security_events) and "wonderland" not in json.dumps(security_events)


def test_a_token_beside_the_callers_own_cookie_is_accepted(client):
    response = change_password(client, {"Authorization": "tok-alice", **cookie("cookie-abc")})
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
    assert_error(change_password(client, headers), 401, "Unauthorized", message)
    denied = [e for e in security_events if e["event"] == "password.denied"]
    assert len(denied) == (message == COOKIE_ONLY)
    assert_nothing_changed(client)


def assert_nothing_changed(client):
    assert status(client, cookie("cookie-def")) == 200
    assert status(client, cookie("cookie-abc")) == 200
    assert logs_in(client, "alice", "wonderland")


@pytest.mark.parametrize(("body", "message"), [
    ({"password": NEW_PASSWORD}, "Current password is required to set a new password"),
    ({"password": NEW_PASSWORD, "currentPassword": ""}, "Current password is required to set a new password"),
    ({"password": NEW_PASSWORD, "currentPassword": "wrong"}, "Current password is incorrect"),
    ({"password": NEW_PASSWORD, "currentPassword": None}, "currentPassword: Field may not be null."),
    ({"password": "short", "currentPassword": "wonderland"}, "password: Must be at least 8 characters."),
    ({"password": "x" * 1025}, "password: Must be at most 1024 characters."),
    ({"password": "before\x00after"}, "password: Must not contain a NUL character."),
    ('{"password": "\\ud800 lone surrogate"}', "Request body is not valid JSON."),  # orjson's refusal
    ({"password": 12345678}, "password: Not a valid string."),
    ({"password": None}, "password: Field may not be null."),
    ({}, "Nothing to change: give username, or password with currentPassword."),
    ({"currentPassword": "wonderland"}, "Nothing to change: give username, or password with currentPassword."),
    ({"password": NEW_PASSWORD, "avatar": None}, "avatar: Cannot be changed here: only username and password can."),
    ({"view": {"enabled": True}}, "view: Cannot be changed here: only username and password can."),
])
def test_a_bad_body_is_refused_naming_the_rule_or_field(client, body, message):
    raw = body if isinstance(body, str) else json.dumps(body)
    response = client.patch(USER, headers=cookie("cookie-abc"), data=raw, content_type="application/json")
    assert_error(response, 400, "Bad Request", message)
    assert_nothing_changed(client)


@pytest.mark.parametrize("password", ["Margaret99", "margaret99", "MARGARET99"])
def test_the_username_is_not_a_password(client, password):
    response = change_password(client, cookie("cookie-m1"), password, "old passphrase")
    assert_error(response, 400, "Bad Request", "password: Must not be the username.")
    assert logs_in(client, "Margaret99", "old passphrase")


def test_unknown_fields_are_ignored_and_exactly_8_characters_will_do(client):
    response = client.patch(USER, headers=cookie("cookie-abc"),
                            json={"password": "12345678", "currentPassword": "wonderland", "theme": "dark"})
    assert response.status_code == 200
    assert logs_in(client, "alice", "12345678")


def test_a_user_without_a_password_needs_no_current_one(client):
    response = client.patch(USER, headers=cookie("cookie-bob"), json={"password": NEW_PASSWORD})
    assert response.status_code == 200
    assert logs_in(client, "bob", NEW_PASSWORD)


def test_the_caller_is_checked_before_the_body(client):
    assert_error(client.patch(USER, data="{"), 401, "Unauthorized")
    assert_error(client.patch(USER, headers=cookie("cookie-abc"), data="x"), 415, "Unsupported Media Type")


def test_current_passwords_are_counted_with_the_logins(make_seeded_app, security_events):
    client = make_seeded_app(LOGIN_RATE_LIMIT="2 per minute").test_client(use_cookies=False)
    assert change_password(client, cookie("cookie-abc"), current="guess 1").status_code == 400
    assert not logs_in(client, "alice", "guess 2")
    refused = change_password(client, cookie("cookie-abc"))
    assert_error(refused, 429, "Too Many Requests", "Too many login attempts, try again later.")
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert (security_events[-1]["event"], security_events[-1]["user"]) == ("password.rate_limited", "alice")
    assert not logs_in(client, "alice", "wonderland")  # the login limit is used up for alice here too


# The command line

def test_set_password_sets_it_and_ends_every_session_and_the_token(app, runner, client, security_events):
    result = runner.invoke(args=["set-password", "alice", "--password", NEW_PASSWORD])
    assert result.exit_code == 0, result.output
    # sess_old, expired, included
    assert "Password of 'alice' set; ended 3 session(s); revoked the API token." in result.output
    assert (status(client, cookie("cookie-abc")), status(client, cookie("cookie-def"))) == (401, 401)
    assert status(client, {"Authorization": "tok-alice"}) == 401
    assert status(client, cookie("cookie-bob")) == 200
    assert not logs_in(client, "alice", "wonderland")
    assert logs_in(client, "alice", NEW_PASSWORD)
    (event,) = [e for e in security_events if e["event"] == "password.changed"]
    assert (event["address"], event["revoked"], event["tokenRevoked"]) == (
        "cli", ["sess_abc123", "sess_def456", "sess_old"], True)


@pytest.mark.parametrize(("flags", "sessions", "token"), [(["--keep-sessions"], 200, 401),
                                                          (["--keep-token"], 401, 200),
                                                          (["--keep-sessions", "--keep-token"], 200, 200)])
def test_set_password_keeps_what_it_is_told_to(runner, client, flags, sessions, token):
    result = runner.invoke(args=["set-password", "alice", "--password", NEW_PASSWORD, *flags])
    assert result.exit_code == 0, result.output
    assert (status(client, cookie("cookie-abc")), status(client, {"Authorization": "tok-alice"})) == (sessions, token)


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
    assert status(client, {"Authorization": "tok-alice"}) == 200
    assert logs_in(client, "Margaret99", "old passphrase")


def test_revoke_token_refuses_the_token_and_keeps_the_sessions(runner, client, security_events):
    result = runner.invoke(args=["revoke-token", "alice"])
    assert (result.exit_code, result.output) == (0, "Revoked the API token of 'alice'.\n")
    assert status(client, {"Authorization": "tok-alice"}) == 401
    assert (status(client, cookie("cookie-abc")), status(client, {"Authorization": "tok-bob"})) == (200, 200)
    (event,) = [e for e in security_events if e["event"] == "token.revoked"]
    assert (event["user"], event["hadToken"], event["address"]) == ("alice", True, "cli")
    again = runner.invoke(args=["revoke-token", "alice"])
    assert (again.exit_code, again.output) == (0, "'alice' has no API token; nothing to revoke.\n")
    # The session cookie makes a new one.
    new = client.patch(TOKEN, headers=cookie("cookie-abc"), json=ALICE_PASSWORD).json["token"]
    assert status(client, {"Authorization": new}) == 200
    assert runner.invoke(args=["revoke-token", "nobody"]).exit_code == 1


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


@pytest.mark.parametrize(("headers", "body", "losers"), [
    ({"Authorization": "tok-alice"}, None, {401}),  # the first reset makes the token the others came with stale
    (cookie("cookie-abc"), ALICE_PASSWORD, {429}),  # the cookie stays good: the spacing refuses them
    (None, None, {401, 429}),  # each with its own credential: two tokens and two cookies
])
def test_of_concurrent_resets_by_one_user_exactly_one_wins(tmp_path, database_url, headers, body, losers):
    # Threads enough that no request waits for one: a request is received when a thread takes it
    # (with 4 a worker, requests blocked on the password hash queue held the rest back for seconds).
    # And room for every password check in the hashing queue: the race is at the reset, not there.
    server = LiveServer(tmp_path, database_url, SEED, workers=3, env={
        "SESSIONS_THREADS": "12", "SESSIONS_HASH_QUEUE": "8", "SESSIONS_HASH_QUEUE_WAIT": "60"}).start()
    many = [headers] * 8 if headers else [{"Authorization": "tok-alice"}, cookie("cookie-abc"),
                                          {"Authorization": "tok-alice"}, cookie("cookie-def")] * 2
    bodies = [body] * 8 if headers else [None, ALICE_PASSWORD] * 4
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda pair: server.request("PATCH", TOKEN, *pair), zip(many, bodies)))
        winners = [answer["token"] for code, _, answer in answers if code == 200]
        assert len(winners) == 1, [code for code, _, _ in answers]
        assert {code for code, _, _ in answers} - {200} <= losers
        assert server.request("GET", SESSIONS, {"Authorization": winners[0]})[0] == 200
    finally:
        server.stop()
