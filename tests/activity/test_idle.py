"""SESSIONS_IDLE_TIMEOUT: a session unused that long is refused and purged as an expired one, on
every route and on verify; driven by the test-control clock."""

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta

import pytest
from conftest import IPHONE_SAFARI, assert_error, cookie
from live_server import ROOT, LiveServer
from receiver import Receiver
from sqlalchemy import select

import models
from zipline_sessions.activity import events, idle
from zipline_sessions.config.checks import ConfigError
from zipline_sessions.storage.database import db

SECRET = "test-secret-0123456789"
SESSIONS = "/api/user/sessions"
IDLE, TOUCH, FLUSH = 600, 60, 1
# A session is idle once its recorded last use is older than this (models.idle_after).
IDLE_AFTER = IDLE + TOUCH + FLUSH
START = "2031-05-01T12:00:00.000Z"
PEOPLE = {"users": [
    {"username": "alice", "password": "wonderland", "token": "tok-alice"},
    {"username": "root", "password": "rootpassword", "token": "tok-root", "admin": True},
]}
# Seeded once the clock is at START (its sign-in then), and never used: idle counts from there.
BOB = {"users": [{"username": "bob", "token": "tok-bob", "sessions": [
    {"id": "sess_bob", "token": "cookie-bob", "expiresAt": "2099-01-01T00:00:00Z"}]}]}


@pytest.fixture
def receiver():
    live = Receiver(SECRET).start()  # events are only recorded with a webhook; never delivered here
    yield live
    live.stop()


@pytest.fixture
def service(make_app, receiver):
    """A test-control app with an idle timeout, activity shown, its clock at START."""
    app = make_app(TEST_CONTROL=True, IDLE_TIMEOUT=IDLE, TOUCH_SECONDS=TOUCH, ACTIVITY_FLUSH_SECONDS=FLUSH,
                   ACTIVITY_FIELDS=True, WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=SECRET)
    client = app.test_client(use_cookies=False)
    assert client.post("/__test__/reset", json=PEOPLE).status_code == 200
    move(client, set=START)
    assert client.post("/__test__/seed", json=BOB).status_code == 200
    return client


def move(client, **body) -> str:
    response = client.post("/__test__/clock", json=body)
    assert response.status_code == 200, response.json
    return response.json["now"]


def log_in(client, username="alice", password="wonderland", headers=None) -> str:
    response = client.post("/api/auth/login", json={"username": username, "password": password},
                           headers={"User-Agent": IPHONE_SAFARI, **(headers or {})})
    assert response.status_code == 200, response.json
    return response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def use(client, token: str, path=SESSIONS, method="GET", **kwargs):
    """One request with the session cookie, closed as a WSGI server closes it (activity is written then)."""
    response = client.open(path, method=method, headers=cookie(token), **kwargs)
    response.close()
    return response


def session_ids(app) -> set[str]:
    with app.app_context():
        ids = set(db.session.execute(select(models.Session.c.id)).scalars())
        db.session.commit()
    return ids


def expired_events(app) -> list[tuple[str, str]]:
    with app.app_context():
        rows = db.session.execute(select(events.SessionEvent.payload).order_by(events.SessionEvent.id)).scalars()
        payloads = [json.loads(row) for row in rows]
        db.session.commit()
    return [(p["session"]["id"], p.get("reason")) for p in payloads if p["type"] == events.EXPIRED]


def test_a_session_unused_for_the_timeout_is_refused_purged_and_an_idle_event(service):
    token = log_in(service)
    current = use(service, token).json["current"]
    move(service, advance=IDLE_AFTER - 0.001)  # a millisecond short of the limit: still live
    assert use(service, token).status_code == 200  # a use, recorded at the clock's time
    move(service, advance=IDLE_AFTER)  # unused for exactly the limit: idle
    assert_error(use(service, token), 401, "Unauthorized", "Invalid login session")
    assert current["id"] not in session_ids(service.application)
    assert (current["id"], "idle") in expired_events(service.application)


def test_idle_time_counts_from_sign_in_when_no_use_is_recorded(service):
    move(service, advance=IDLE_AFTER - 1)
    assert use(service, "cookie-bob").status_code == 200
    token = log_in(service)  # bob's session keeps its own recorded use; alice's starts now
    move(service, advance=IDLE_AFTER - 0.5)
    assert use(service, token).status_code == 200
    move(service, advance=1)
    assert use(service, "cookie-bob").status_code == 401


def test_a_use_inside_the_touch_throttle_is_not_recorded_and_still_never_cut_early(service):
    """The throttle skips writing a use less than TOUCH_SECONDS after the recorded one: the idle
    rule allows for that lag, so a session used within the timeout is never refused."""
    token = log_in(service)
    created = use(service, token).json["current"]["lastSeenAt"]
    move(service, advance=TOUCH - 1)
    assert use(service, token).json["current"]["lastSeenAt"] == created  # not recorded
    move(service, advance=IDLE)  # IDLE seconds after the real last use
    assert use(service, token).status_code == 200


def test_last_activity_follows_the_service_clock(service):
    token = log_in(service)
    assert use(service, token).json["current"]["lastSeenAt"] == START
    assert move(service, set="2031-05-01T12:05:06.789Z") == "2031-05-01T12:05:06.789Z"
    # Recorded at the clock's time of the request (not the real time the response closed at).
    use(service, token)
    assert use(service, token).json["current"]["lastSeenAt"] == "2031-05-01T12:05:06.789Z"


def test_verify_refuses_an_idle_session_without_purging_it(service):
    move(service, advance=IDLE_AFTER + 1)
    assert use(service, "cookie-bob", "/api/auth/verify").status_code == 401
    assert "sess_bob" in session_ids(service.application)
    response = service.get("/api/auth/verify", headers={"Authorization": "tok-bob", **cookie("cookie-bob")})
    assert response.status_code == 200 and "X-Zipline-Session-Id" not in response.headers


@pytest.mark.parametrize(("method", "path", "body", "purged"), [
    ("GET", SESSIONS, None, True),
    ("DELETE", SESSIONS, {"all": True}, True),
    ("GET", "/api/auth/logout", None, True),
    ("POST", "/api/auth/logout", None, True),
    # Verify's rules, as for an expired cookie: refused, not purged.
    ("PATCH", "/api/user", {"password": "a brand new password 42"}, False),
    ("PATCH", "/api/user/token", None, False),
])
def test_every_route_refuses_an_idle_cookie(service, method, path, body, purged):
    move(service, advance=IDLE_AFTER + 1)
    response = use(service, "cookie-bob", path, method=method, json=body)
    assert_error(response, 401, "Unauthorized")
    assert ("sess_bob" not in session_ids(service.application)) is purged
    assert expired_events(service.application) == ([("sess_bob", "idle")] if purged else [])


def test_lists_and_revocations_leave_idle_sessions_out(service):
    move(service, advance=IDLE_AFTER + 1)
    by_token = service.get(SESSIONS, headers={"Authorization": "tok-bob"}).json
    assert by_token == {"current": None, "other": []}
    admin = service.get("/api/admin/users/bob/sessions", headers={"Authorization": "tok-root"}).json
    assert admin["sessions"] == []
    response = service.delete(SESSIONS, headers={"Authorization": "tok-bob"}, json={"sessionId": "sess_bob"})
    assert_error(response, 400, "Bad Request", "Session not found in logged in sessions")


def test_a_login_with_an_idle_cookie_opens_a_new_session_and_purges_idle_ones(service):
    old = log_in(service)
    move(service, advance=IDLE_AFTER + 1)
    new = log_in(service, headers=cookie(old))
    assert new != old
    current = use(service, new).json
    assert current["other"] == []
    reasons = dict(expired_events(service.application))
    assert reasons["sess_bob"] == "idle" and len(reasons) == 2 and set(reasons.values()) == {"idle"}
    assert session_ids(service.application) == {current["current"]["id"]}


def test_the_absolute_lifetime_is_reason_ttl(make_app, receiver):
    app = make_app(TEST_CONTROL=True, IDLE_TIMEOUT=IDLE, TTL_SECONDS=300, WEBHOOK_URL=receiver.url,
                   WEBHOOK_SECRET=SECRET)
    client = app.test_client(use_cookies=False)
    client.post("/__test__/reset", json=PEOPLE)
    token = log_in(client)
    move(client, advance=301)
    assert use(client, token).status_code == 401
    assert [reason for _, reason in expired_events(app)] == ["ttl"]


def test_purge_expired_purges_idle_sessions_too(service):
    log_in(service)
    move(service, advance=IDLE_AFTER + 1)
    output = service.application.test_cli_runner().invoke(args=["purge-expired"]).output
    assert output == "Purged 2 expired session(s).\n"
    assert session_ids(service.application) == set() and len(expired_events(service.application)) == 2


def test_without_an_idle_timeout_an_unused_session_lives_its_lifetime(make_app):
    app = make_app(TEST_CONTROL=True)
    client = app.test_client(use_cookies=False)
    client.post("/__test__/reset", json=PEOPLE)
    client.post("/__test__/seed", json=BOB)
    move(client, advance=30 * 86400)
    assert use(client, "cookie-bob").status_code == 200


def test_why_a_session_ended(make_app):
    now = datetime(2031, 1, 1)
    row = type("Row", (), {"expires_at": now + timedelta(days=1), "last_seen_at": None,
                           "created_at": now - timedelta(seconds=IDLE_AFTER)})
    app = make_app(IDLE_TIMEOUT=IDLE, TOUCH_SECONDS=TOUCH, ACTIVITY_FLUSH_SECONDS=FLUSH)
    with app.app_context():
        assert idle.ended_because(row, now) == "idle"
        row.last_seen_at = now - timedelta(seconds=IDLE_AFTER - 1)
        assert idle.ended_because(row, now) is None
        row.expires_at = now
        assert idle.ended_because(row, now) == "ttl"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"IDLE_TIMEOUT": 600, "TOUCH_SECONDS": 0},
     "SESSIONS_IDLE_TIMEOUT needs last activity recorded, but SESSIONS_TOUCH_SECONDS is 0"),
    ({"IDLE_TIMEOUT": 200, "TOUCH_SECONDS": 60},
     ("SESSIONS_TOUCH_SECONDS (60) is more than a quarter of SESSIONS_IDLE_TIMEOUT (200): lower it, "
     "or raise the idle timeout to at least 240")),
    ({"IDLE_TIMEOUT": -1}, "SESSIONS_IDLE_TIMEOUT must be a whole number of seconds (0: none), not -1"),
    ({"IDLE_TIMEOUT": "10m"}, "SESSIONS_IDLE_TIMEOUT must be a whole number"),
    ({"ACTIVITY_FLUSH_SECONDS": 0}, "SESSIONS_ACTIVITY_FLUSH_SECONDS must be a number of seconds above 0"),
    ({"ACTIVITY_FLUSH_SECONDS": 61}, "at most 60"),
])
def test_settings_are_checked(make_app, overrides, message):
    with pytest.raises(ConfigError) as error:
        make_app(**overrides)
    assert message in error.value.message and "\n" not in error.value.message


def test_a_quarter_exactly_is_accepted(make_app):
    assert make_app(IDLE_TIMEOUT=240, TOUCH_SECONDS=60).extensions["activity"].idle_after == timedelta(seconds=301)


@pytest.mark.parametrize(("env", "message"), [
    ({"SESSIONS_IDLE_TIMEOUT": "600", "SESSIONS_TOUCH_SECONDS": "0"},
     "zipline-sessions: SESSIONS_IDLE_TIMEOUT needs last activity recorded, but SESSIONS_TOUCH_SECONDS is 0"),
    ({"SESSIONS_IDLE_TIMEOUT": "200"},
     ("zipline-sessions: SESSIONS_TOUCH_SECONDS (60) is more than a quarter of SESSIONS_IDLE_TIMEOUT (200): "
     "lower it, or raise the idle timeout to at least 240")),
])
def test_serve_py_refuses_to_start_in_one_line(tmp_path, env, message):
    result = subprocess.run([sys.executable, "serve.py"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "SESSIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
                                              **env})
    assert result.returncode == 2 and result.stderr.strip() == message


def test_a_real_server_ends_idle_sessions_by_its_test_clock(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, None, workers=2, env={
        "SESSIONS_TEST_CONTROL": "true", "SESSIONS_IDLE_TIMEOUT": str(IDLE), "SESSIONS_ACTIVITY_FIELDS": "true"}).start()
    try:
        assert server.request("POST", "/__test__/reset", body=PEOPLE)[0] == 200
        assert server.request("POST", "/__test__/clock", body={"set": START})[0] == 200
        status, headers, _ = server.request("POST", "/api/auth/login", body={"username": "alice", "password": "wonderland"})
        assert status == 200
        mine = cookie(headers["Set-Cookie"].split(";")[0].split("=", 1)[1])
        later = server.request("POST", "/__test__/clock", body={"advance": IDLE_AFTER - 1})[2]["now"]
        assert server.request("GET", "/api/auth/verify", mine)[0] == 200  # a use, at the clock's time
        deadline = time.monotonic() + 30
        while server.request("GET", SESSIONS, {"Authorization": "tok-alice"})[2]["other"][0]["lastSeenAt"] != later:
            assert time.monotonic() < deadline, "the use was never recorded at the clock's time"
            time.sleep(0.05)
        server.request("POST", "/__test__/clock", body={"advance": IDLE_AFTER - 1})
        assert all(server.request("GET", "/api/auth/verify", mine)[0] == 200 for _ in range(6))  # both workers
        server.request("POST", "/__test__/clock", body={"advance": IDLE_AFTER})
        assert all(server.request("GET", "/api/auth/verify", mine)[0] == 401 for _ in range(6))
        assert server.request("GET", SESSIONS, mine)[0] == 401
        assert server.request("GET", SESSIONS, {"Authorization": "tok-alice"})[2] == {"current": None, "other": []}
    finally:
        server.stop()
