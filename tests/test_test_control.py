"""The test-control API (/__test__/) and SESSIONS_SEED_FILE, on real Granian servers with two workers."""

import http.client
import json
import os
import secrets
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import IPHONE_SAFARI, POSTGRES_SERVER, SEED, cookie, write_json
from live_server import ROOT, LiveServer
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from app import create_app
from settings import ConfigError

SESSIONS = "/api/user/sessions"
ALICE = {"Authorization": "tok-alice"}
LOGIN = "/api/auth/login"
LIMIT = 3  # SESSIONS_LOGIN_RATE_LIMIT of the shared server, per minute


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One test-control server for this module (behind one trusted proxy, login limited), on a
    database of its own; each test resets it first."""
    folder = tmp_path_factory.mktemp("test-control")
    with own_database(folder) as url:
        live = LiveServer(folder, url, None, workers=2, env={
            "SESSIONS_TEST_CONTROL": "true", "SESSIONS_TRUSTED_PROXIES": "1",
            "SESSIONS_LOGIN_RATE_LIMIT": f"{LIMIT} per minute"}).start()
        yield live
        live.stop()


@pytest.fixture
def server(shared):
    assert reset(shared) == (200, {"users": 0, "sessions": 0})
    return shared


class own_database:
    """A SQLite file in `folder`, or a PostgreSQL database made for the block and dropped after
    (tests of other modules empty the shared one's schema)."""

    def __init__(self, folder):
        self.folder, self.name = folder, f"zipline_sessions_tc_{secrets.token_hex(4)}"

    def __enter__(self) -> str:
        if not POSTGRES_SERVER:
            return f"sqlite:///{self.folder / 'sessions.db'}"
        self.admin = create_engine(POSTGRES_SERVER, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
        return make_url(POSTGRES_SERVER).set(database=self.name).render_as_string(hide_password=False)

    def __exit__(self, *_):
        if POSTGRES_SERVER:
            with self.admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{self.name}" WITH (FORCE)')
            self.admin.dispose()


def reset(server, document=None):
    status, _, body = server.request("POST", "/__test__/reset", body=document)
    return status, body


def control(server, method, path, body=None, headers=None):
    status, _, answer = server.request(method, "/__test__" + path, headers, body)
    return status, answer


def journal(server) -> list:
    """The journal without its times (asserted on their own)."""
    entries = control(server, "GET", "/requests")[1]["requests"]
    return [{key: value for key, value in entry.items() if key != "time"} for entry in entries]


def log_in(server, username="alice", password="wonderland", agent=IPHONE_SAFARI):
    status, headers, body = server.request("POST", LOGIN, {"User-Agent": agent},
                                           {"username": username, "password": password})
    return status, headers.get("Set-Cookie", "").split(";")[0], body


# ---- off, and who may call


def test_without_test_control_the_routes_do_not_exist_and_the_module_is_never_imported(tmp_path, database_url):
    live = LiveServer(tmp_path, database_url, SEED, workers=2).start()
    try:
        for method, path in (("POST", "/reset"), ("POST", "/seed"), ("GET", "/clock"), ("POST", "/clock"),
                             ("POST", "/faults"), ("DELETE", "/faults"), ("GET", "/requests")):
            status, body = control(live, method, path, {"users": []} if method == "POST" else None)
            assert (status, body["statusCode"], body["error"]) == (404, 404, "Not Found"), (method, path)
        assert live.request("GET", SESSIONS, ALICE)[0] == 200
        assert "SESSIONS_TEST_CONTROL" not in live.log.read_text()
    finally:
        live.stop()
    probe = ("import sys, app, models; app.create_app({'DATABASE_URL': sys.argv[1]}); "
             "print('test_control' in sys.modules, models.clock_hook)")
    result = subprocess.run([sys.executable, "-c", probe, database_url], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    assert result.stdout.split() == ["False", "None"]


def test_only_loopback_clients_may_use_it_and_the_start_warns(server):
    refused = {"statusCode": 403, "error": "Forbidden", "message": "Test control answers loopback clients only"}
    # Behind the trusted proxy, the client is the address it names.
    for address in ("203.0.113.9", "192.168.1.20", "2001:db8::1"):
        assert control(server, "GET", "/requests", headers={"X-Forwarded-For": address}) == (403, refused)
        status, body = server.request("POST", "/__test__/reset", {"X-Forwarded-For": address}, {"users": []})[::2]
        assert (status, body) == (403, refused)
    for address in ("127.0.0.1", "127.8.9.10", "::1"):
        assert control(server, "GET", "/requests", headers={"X-Forwarded-For": address})[0] == 200
    assert "WARNING in test_control: SESSIONS_TEST_CONTROL is on" in server.log.read_text()


# ---- reset and seed


def test_reset_empties_users_sessions_counts_faults_journal_and_clock_then_loads_its_body(server):
    assert reset(server, SEED) == (200, {"users": 2, "sessions": 4})
    assert server.request("GET", SESSIONS, ALICE)[0] == 200
    for _ in range(LIMIT):
        assert log_in(server, password="wrong")[0] == 401
    assert log_in(server)[0] == 429
    control(server, "POST", "/faults", {"route": "GET /api/health", "status": 500})
    control(server, "POST", "/clock", {"set": "2040-01-01T00:00:00Z"})

    assert reset(server, {"users": [{"username": "dora", "token": "tok-dora"}]}) == (200, {"users": 1, "sessions": 0})
    assert server.request("GET", SESSIONS, ALICE)[0] == 401
    assert server.request("GET", SESSIONS, {"Cookie": "zipline_token=cookie-abc"})[0] == 401
    assert server.request("GET", SESSIONS, {"Authorization": "tok-dora"})[::2] == (200, {"current": None, "other": []})
    assert control(server, "GET", "/faults") == (200, {"faults": []})
    assert server.request("GET", "/api/health")[0] == 200
    assert control(server, "GET", "/clock")[1]["now"] < "2040"
    assert [entry["path"] for entry in journal(server)] == [SESSIONS, SESSIONS, SESSIONS, "/api/health"]

    assert reset(server, SEED)[0] == 200  # the login counts went with the reset
    assert log_in(server)[0] == 200


def test_a_bad_seed_in_a_reset_is_400_naming_the_entry_and_changes_nothing(server):
    reset(server, SEED)
    control(server, "POST", "/faults", {"route": "GET /api/health", "status": 500})
    bad = {"users": [{"username": "x"}, {"username": "y", "sessions": [{"createdAt": "2024-13-01"}]}]}
    assert reset(server, bad) == (400, {
        "statusCode": 400, "error": "Bad Request",
        "message": "Seed refused, nothing changed: users[1].sessions[0].createdAt: '2024-13-01' is not an ISO 8601 date"})
    assert server.request("GET", SESSIONS, ALICE)[0] == 200
    assert [fault["route"] for fault in control(server, "GET", "/faults")[1]["faults"]] == ["GET /api/health"]


def test_seed_adds_a_document_and_refuses_one_that_clashes(server):
    assert control(server, "POST", "/seed", SEED) == (200, {"users": 2, "sessions": 4})
    assert control(server, "POST", "/seed", {"users": [{"username": "carol", "token": "tok-bob"}]}) == (400, {
        "statusCode": 400, "error": "Bad Request",
        "message": "Seed refused, nothing changed: users[0].token: token already exists in the database"})
    assert control(server, "POST", "/seed", {"users": [{"username": "carol", "token": "tok-carol"}]})[0] == 200
    assert server.request("GET", SESSIONS, {"Authorization": "tok-carol"})[0] == 200
    status, _, body = server.request("POST", "/__test__/seed", {"Content-Type": "text/plain"})
    assert status == 415 and body["statusCode"] == 415


# ---- the clock


def test_the_clock_dates_logins_and_expires_sessions_on_every_worker(server):
    reset(server, SEED)
    assert control(server, "POST", "/clock", {"set": "2031-05-01T14:00:00+02:00"}) == (
        200, {"now": "2031-05-01T12:00:00.000Z"})
    status, session_cookie, _ = log_in(server)
    assert status == 200
    for _ in range(8):  # fresh connections: both workers answer
        status, _, body = server.request("GET", SESSIONS, {"Cookie": session_cookie})
        assert status == 200 and body["current"]["createdAt"] == "2031-05-01T12:00:00.000Z"
    assert control(server, "POST", "/clock", {"advance": 7 * 86400 - 0.001}) == (
        200, {"now": "2031-05-08T11:59:59.999Z"})
    assert server.request("GET", SESSIONS, {"Cookie": session_cookie})[0] == 200
    assert control(server, "POST", "/clock", {"advance": 0.001})[1] == {"now": "2031-05-08T12:00:00.000Z"}
    for _ in range(4):
        assert server.request("GET", SESSIONS, {"Cookie": session_cookie})[0] == 401
    # The seeded sessions expire in 2099; the one that expired in 2024 stays gone.
    assert [s["id"] for s in server.request("GET", SESSIONS, ALICE)[2]["other"]] == ["sess_def456", "sess_abc123"]
    status, body = control(server, "POST", "/clock", {"release": True})
    assert status == 200 and body["now"] < "2031" and control(server, "GET", "/clock")[1]["now"] < "2031"


def test_login_limit_windows_follow_the_clock(server):
    reset(server, SEED)
    control(server, "POST", "/clock", {"set": "2030-01-01T00:00:00Z"})
    for _ in range(LIMIT):
        assert log_in(server, password="wrong")[0] == 401
    status, headers, _ = server.request("POST", LOGIN, {}, {"username": "alice", "password": "wonderland"})
    assert status == 429 and headers["Retry-After"] == "60"
    control(server, "POST", "/clock", {"advance": 59})
    assert log_in(server)[0] == 429
    control(server, "POST", "/clock", {"advance": 1})
    assert log_in(server)[0] == 200


def test_a_seed_takes_its_default_dates_from_the_clock(server):
    control(server, "POST", "/clock", {"set": "2032-02-02T00:00:00Z"})
    control(server, "POST", "/seed", {"users": [{"username": "eve", "token": "tok-eve", "sessions": [{"ua": "curl/8"}]}]})
    body = server.request("GET", SESSIONS, {"Authorization": "tok-eve"})[2]
    assert body["other"][0]["createdAt"] == "2032-02-02T00:00:00.000Z"
    control(server, "POST", "/clock", {"advance": 7 * 86400})  # the default lifetime is the TTL
    assert server.request("GET", SESSIONS, {"Authorization": "tok-eve"})[2] == {"current": None, "other": []}


# ---- faults


def test_a_status_fault_answers_exactly_its_times_across_workers(server):
    reset(server, SEED)
    assert control(server, "POST", "/faults", {"route": "GET /api/user/sessions", "status": 503,
                                               "message": "Try again later", "times": 5}) == (
        200, {"faults": [{"route": "GET /api/user/sessions", "status": 503, "message": "Try again later",
                          "times": 5}]})
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.request("GET", SESSIONS, ALICE)[::2], range(24)))
    assert Counter(status for status, _ in answers) == {503: 5, 200: 19}
    assert {json.dumps(body) for status, body in answers if status == 503} == {json.dumps(
        {"statusCode": 503, "error": "Service Unavailable", "message": "Try again later"})}
    assert control(server, "GET", "/faults") == (200, {"faults": []})
    faulted = [entry for entry in journal(server) if entry["fault"]]
    assert faulted == [{"method": "GET", "path": SESSIONS, "status": 503, "user": "alice",
                        "fault": {"status": 503}}] * 5


def test_a_fault_without_times_holds_until_cleared_and_matches_method_and_path_exactly(server):
    reset(server, SEED)
    control(server, "POST", "/faults", {"route": "DELETE /api/user/sessions", "status": 500})
    for _ in range(3):
        status, _, body = server.request("DELETE", SESSIONS, ALICE, {"all": True})
        assert (status, body["message"]) == (500, "Injected fault")
    assert server.request("GET", SESSIONS, ALICE)[0] == 200  # another method
    assert server.request("GET", SESSIONS + "/", ALICE)[0] == 404  # another path
    assert control(server, "DELETE", "/faults") == (200, {"faults": []})
    assert server.request("DELETE", SESSIONS, ALICE, {"all": True})[0] == 200


def test_a_delay_fault_waits_before_serving(server):
    reset(server, SEED)
    control(server, "POST", "/faults", {"route": "GET /api/health", "delayMs": 300, "jitterMs": 100, "times": 2})
    for _ in range(2):
        started = time.monotonic()
        assert server.request("GET", "/api/health")[::2] == (200, {"status": "ok"})
        assert time.monotonic() - started >= 0.3
    assert server.request("GET", "/api/health")[0] == 200
    waits = [entry["fault"] for entry in journal(server)]
    assert len(waits) == 3 and waits[2] is None
    assert all(300 <= wait["delayMs"] <= 400 and list(wait) == ["delayMs"] for wait in waits[:2])


def test_a_drop_fault_closes_the_connection_without_a_complete_answer(server):
    reset(server, SEED)
    control(server, "POST", "/faults", {"route": "POST /api/auth/login", "drop": True, "times": 1})
    # Granian closes the connection before the declared body: the client gets no status line
    # (RemoteDisconnected) or a head whose body never comes (IncompleteRead), as Granian's timing goes.
    with pytest.raises((http.client.RemoteDisconnected, http.client.IncompleteRead)):
        log_in(server)
    assert log_in(server)[0] == 200
    assert journal(server) == [
        {"method": "POST", "path": LOGIN, "status": None, "user": "alice", "fault": {"drop": True}},
        {"method": "POST", "path": LOGIN, "status": 200, "user": "alice", "fault": None}]


@pytest.mark.parametrize(("body", "message"), [
    ({"route": "GET /api/health"}, '_schema: Give "status", "delayMs" (and "jitterMs") or "drop": true.'),
    ({"route": "/api/health", "status": 500}, "route: Must be a method and a path, such as 'GET /api/user/sessions'."),
    ({"route": "POST /__test__/reset", "status": 500}, "route: Test-control routes are never faulted."),
    ({"route": "GET /", "status": 200}, "status: Must be greater than or equal to 400 and less than or equal to 599."),
    ({"route": "GET /", "status": 503, "drop": True}, '_schema: A fault answers "status" or drops the connection, not both.'),
    ({"route": "GET /", "drop": True, "times": 0}, "times: Must be greater than or equal to 1."),
    ({"route": "GET /", "delayMs": "100"}, "delayMs: Not a valid integer."),
])
def test_a_bad_fault_is_400_and_adds_nothing(server, body, message):
    assert control(server, "POST", "/faults", body) == (400, {"statusCode": 400, "error": "Bad Request",
                                                              "message": message.removeprefix("_schema: ")})
    assert control(server, "GET", "/faults") == (200, {"faults": []})


@pytest.mark.parametrize("body", [{}, {"advance": "60"}, {"advance": True}, {"set": "tomorrow"},
                                  {"release": False}, {"set": "2030-01-01", "advance": 1}])
def test_a_bad_clock_body_is_400_and_moves_nothing(server, body):
    control(server, "POST", "/clock", {"set": "2030-01-01T00:00:00Z"})
    status, answer = control(server, "POST", "/clock", body)
    assert status == 400 and answer["statusCode"] == 400
    assert control(server, "GET", "/clock")[1] == {"now": "2030-01-01T00:00:00.000Z"}


# ---- the journal


def test_the_journal_lists_requests_oldest_first_with_their_user_and_no_secret(server):
    reset(server, SEED)
    control(server, "POST", "/clock", {"set": "2030-06-01T08:00:00Z"})
    server.request("GET", SESSIONS + "?verbose=1", {"Authorization": "tok-alice", **cookie("cookie-abc")})
    server.request("DELETE", SESSIONS, {"Cookie": "zipline_token=cookie-abc"}, {"sessionId": "sess_def456"})
    server.request("GET", SESSIONS, {"Authorization": "wrong-token"})
    log_in(server, "bob", "guess")
    server.request("POST", "/api/auth/logout", cookie("cookie-bob"))
    server.request("GET", "/nowhere")
    entries = control(server, "GET", "/requests")[1]["requests"]
    assert {entry["time"] for entry in entries} == {"2030-06-01T08:00:00.000Z"}
    assert journal(server) == [
        {"method": "GET", "path": SESSIONS, "status": 200, "user": "alice", "fault": None},
        {"method": "DELETE", "path": SESSIONS, "status": 200, "user": "alice", "fault": None},
        {"method": "GET", "path": SESSIONS, "status": 401, "user": None, "fault": None},
        {"method": "POST", "path": LOGIN, "status": 401, "user": "bob", "fault": None},
        {"method": "POST", "path": "/api/auth/logout", "status": 200, "user": "bob", "fault": None},
        {"method": "GET", "path": "/nowhere", "status": 404, "user": None, "fault": None},
    ]
    raw = json.dumps(entries)
    for secret in ("tok-alice", "cookie-abc", "cookie-bob", "wrong-token", "guess", "verbose"):
        assert secret not in raw


# ---- SESSIONS_SEED_FILE and refusals at start


def test_a_seed_file_seeds_an_empty_database_at_start_and_only_then(tmp_path, database_url):
    first = write_json(tmp_path / "first.json", SEED)
    live = LiveServer(tmp_path, database_url, None, workers=2, env={"SESSIONS_SEED_FILE": str(first)}).start()
    try:
        body = live.request("GET", SESSIONS, {"Authorization": "tok-alice", **cookie("cookie-abc")})[2]
        assert body["current"]["id"] == "sess_abc123" and len(body["other"]) == 1
        live.request("DELETE", SESSIONS, ALICE, {"all": True})
    finally:
        live.stop()
    other = write_json(tmp_path / "other.json", {"users": [{"username": "zed", "token": "tok-zed"}]})
    again = LiveServer(tmp_path, database_url, None, workers=2, env={"SESSIONS_SEED_FILE": str(other)}).start()
    try:  # the database had users: left as it was, the file not loaded
        assert again.request("GET", SESSIONS, {"Authorization": "tok-zed"})[0] == 401
        assert again.request("GET", SESSIONS, ALICE)[::2] == (200, {"current": None, "other": []})
    finally:
        again.stop()


def start_refused(database_url, **settings) -> str:
    env = {"SESSIONS_DATABASE_URL": database_url, "SESSIONS_BIND": "127.0.0.1:0",
           **{f"SESSIONS_{key}": value for key, value in settings.items()}}
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("SESSIONS_")}
    result = subprocess.run([sys.executable, "serve.py"], check=False, cwd=ROOT, env={**inherited, **env}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    return result.stderr


def test_a_bad_seed_file_stops_the_start_with_one_line_and_stores_nothing(tmp_path, database_url):
    bad = write_json(tmp_path / "bad.json", {"users": [{"username": "ok"}, {"username": "ok"}]})
    assert start_refused(database_url, SEED_FILE=str(bad)) == (
        "zipline-sessions: SESSIONS_SEED_FILE refused, nothing stored: users[1].username: 'ok' repeats "
        "users[0].username\n")
    assert "cannot be read" in start_refused(database_url, SEED_FILE=str(tmp_path / "missing.json"))
    engine = create_engine(database_url)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM users").scalar_one() == 0
    engine.dispose()


def test_test_control_with_login_limits_counted_outside_the_database_is_refused(database_url):
    message = start_refused(database_url, TEST_CONTROL="true", RATELIMIT_STORAGE_URL="redis://127.0.0.1:6379/0")
    assert message.startswith("zipline-sessions: SESSIONS_TEST_CONTROL=true cannot move the clock of login "
                              "limits counted in SESSIONS_RATELIMIT_STORAGE_URL=redis://127.0.0.1:6379/0")
    assert message.count("\n") == 1


@pytest.mark.parametrize(("overrides", "named"), [
    ({"TEST_CONTROL": "yes"}, "SESSIONS_TEST_CONTROL must be true or false, not 'yes'"),
    ({"SEED_FILE": 3}, "SESSIONS_SEED_FILE must be a file path, not 3"),
    ({"TEST_CONTROL": True, "RATELIMIT_STORAGE_URL": "memory://"}, "SESSIONS_RATELIMIT_STORAGE_URL=memory://"),
])
def test_fixture_settings_are_checked(database_url, overrides, named):
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        create_app({"DATABASE_URL": database_url, **overrides})
