"""Last activity: lastSeenAt and the client address of each session's last use, written at most
once per SESSIONS_TOUCH_SECONDS, shown only when asked (the contract's five fields otherwise)."""

import json
import time
from datetime import timedelta

import pytest
from conftest import SEED, cookie, sqlite_only
from live_server import LiveServer
from openapi_spec_validator import validate
from sqlalchemy import create_engine, select, update

import models
from zipline_sessions.activity.last_seen import stored_address
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import db
from zipline_sessions.web.framework import SYNCED_FUNCTIONS

SESSIONS = "/api/user/sessions"
ALICE = {"Authorization": "tok-alice", **cookie("cookie-abc")}
ADDRESS = {"REMOTE_ADDR": "203.0.113.77"}


@pytest.fixture
def make_seeded(make_app):
    def make(**overrides):
        app = make_app(**overrides)
        with app.app_context():
            seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], clock.utcnow()))
        return app
    return make


def use(client, path=SESSIONS, headers=ALICE, environ=ADDRESS, method="GET"):
    """One request, its response closed as a WSGI server closes it (the activity write runs then)."""
    response = client.open(path, method=method, headers=headers, environ_base=environ)
    response.close()
    return response


def activity_of(app, session_id: str):
    with app.app_context():
        row = db.session.execute(select(models.Session.c.last_seen_at, models.Session.c.ip)
                                 .where(models.Session.c.id == session_id)).one()
        db.session.commit()
    return row


def age(app, session_id: str, seconds: int) -> None:
    """Move the session's last use `seconds` into the past."""
    with app.app_context():
        db.session.execute(update(models.Session).where(models.Session.c.id == session_id)
                           .values(last_seen_at=clock.utcnow() - timedelta(seconds=seconds)))
        db.session.commit()


def test_a_get_with_the_cookie_records_when_and_from_where(make_seeded):
    app = make_seeded()
    before = clock.utcnow()
    assert use(app.test_client(use_cookies=False)).status_code == 200
    seen_at, ip = activity_of(app, "sess_abc123")
    assert seen_at >= before and ip == "203.0.113.77"
    assert activity_of(app, "sess_def456") == (None, None)  # listed, not used


def test_a_session_is_written_at_most_once_per_touch_seconds(make_seeded):
    app = make_seeded(TOUCH_SECONDS=60)
    client = app.test_client(use_cookies=False)
    use(client)
    first = activity_of(app, "sess_abc123")
    use(client, environ={"REMOTE_ADDR": "198.51.100.9"})
    assert activity_of(app, "sess_abc123") == first  # inside its minute: no write
    age(app, "sess_abc123", 61)
    use(client, environ={"REMOTE_ADDR": "198.51.100.9"})
    seen_at, ip = activity_of(app, "sess_abc123")
    assert seen_at > first.last_seen_at and ip == "198.51.100.9"


def test_the_writes_a_worker_schedules_leave_no_trace_in_the_app(make_seeded):
    """Each due write is a new after_this_request closure: the app remembers a bounded number of
    functions (framework.SessionsApp.ensure_sync), not one per request served."""
    app = make_seeded(TOUCH_SECONDS=60)
    client = app.test_client(use_cookies=False)
    for _ in range(SYNCED_FUNCTIONS + 50):
        age(app, "sess_abc123", 61)
        assert use(client).status_code == 200
    assert activity_of(app, "sess_abc123").last_seen_at > clock.utcnow() - timedelta(seconds=5)
    assert app._synced.cache_info().currsize <= SYNCED_FUNCTIONS


def test_a_token_alone_names_no_session_to_touch(make_seeded):
    app = make_seeded()
    use(app.test_client(use_cookies=False), headers={"Authorization": "tok-alice"})
    assert activity_of(app, "sess_abc123") == (None, None)
    assert activity_of(app, "sess_def456") == (None, None)


def test_verify_counts_as_a_use_and_an_other_users_cookie_does_not(make_seeded):
    app = make_seeded()
    client = app.test_client(use_cookies=False)
    assert use(client, "/api/auth/verify", headers=cookie("cookie-def")).status_code == 200
    assert activity_of(app, "sess_def456").ip == "203.0.113.77"
    # Alice's token with Bob's cookie: the cookie's session is not current, so not used.
    use(client, "/api/auth/verify", headers={"Authorization": "tok-alice", **cookie("cookie-bob")})
    use(client, headers={"Authorization": "tok-alice", **cookie("cookie-bob")})
    assert activity_of(app, "sess_bob1") == (None, None)


def test_a_revocation_counts_as_a_use_of_the_callers_session(make_seeded):
    app = make_seeded()
    response = use(app.test_client(use_cookies=False), method="DELETE", headers={**ALICE, "Content-Type": "application/json"})
    assert response.status_code == 400  # no body; the caller was still identified by the cookie
    assert activity_of(app, "sess_abc123").ip == "203.0.113.77"


def test_login_is_the_first_use(make_seeded):
    app = make_seeded()
    response = app.test_client(use_cookies=False).post("/api/auth/login", json={"username": "alice", "password": "wonderland"},
                                      environ_base={"REMOTE_ADDR": "2001:db8:1234:5678::9"})
    assert response.status_code == 200
    with app.app_context():
        row = db.session.execute(select(models.Session).order_by(models.Session.c.created_at.desc())).first()
    assert row.last_seen_at == row.created_at and row.ip == "2001:db8:1234:5678::9"


def test_touch_seconds_zero_records_nothing(make_seeded):
    app = make_seeded(TOUCH_SECONDS=0)
    client = app.test_client(use_cookies=False)
    use(client)
    assert activity_of(app, "sess_abc123") == (None, None)
    client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"})
    with app.app_context():
        assert db.session.execute(select(models.Session.c.id).where(models.Session.c.ip.is_not(None))).all() == []


@pytest.mark.parametrize(("mode", "address", "stored"), [
    ("full", "203.0.113.77", "203.0.113.77"),
    ("truncate", "203.0.113.77", "203.0.113.0"),
    ("truncate", "2001:db8:1234:5678::9", "2001:db8:1234::"),
    ("truncate", "::ffff:203.0.113.77", "203.0.113.0"),
    ("full", "::ffff:203.0.113.77", "203.0.113.77"),
    ("off", "203.0.113.77", None),
    ("full", "unix:/run/socket", None),
    ("full", None, None),
])
def test_ip_mode(mode, address, stored):
    assert stored_address(address, mode) == stored


def test_ip_mode_applies_before_storing(make_seeded):
    app = make_seeded(IP_MODE="truncate")
    use(app.test_client(use_cookies=False))
    assert activity_of(app, "sess_abc123").ip == "203.0.113.0"


def test_behind_a_trusted_proxy_the_forwarded_address_is_kept(make_seeded):
    app = make_seeded(TRUSTED_PROXIES=1)
    use(app.test_client(use_cookies=False), headers={**ALICE, "X-Forwarded-For": "192.0.2.5"}, environ={"REMOTE_ADDR": "127.0.0.1"})
    assert activity_of(app, "sess_abc123").ip == "192.0.2.5"


def test_the_fields_are_shown_only_when_asked(make_seeded, make_app):
    plain = make_seeded()
    use(plain.test_client(use_cookies=False))
    body = plain.test_client(use_cookies=False).get(SESSIONS, headers=ALICE).json
    assert set(body["current"]) == {"id", "createdAt", "ua", "client", "device"}

    shown = make_app(ACTIVITY_FIELDS=True)  # the same database
    client = shown.test_client(use_cookies=False)
    body = client.get(SESSIONS, headers=ALICE).get_data(as_text=True)
    current = json.loads(body)["current"]
    assert list(current) == ["id", "createdAt", "ua", "client", "device", "lastSeenAt", "ip", "location"]
    assert current["ip"] == "203.0.113.77" and current["lastSeenAt"].endswith("Z")
    assert json.loads(body)["other"][0]["lastSeenAt"] is None
    deleted = client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"}).json
    assert deleted["current"]["ip"] == "203.0.113.77" and deleted["other"] == []


def test_the_openapi_document_follows_the_fields_setting(make_app):
    for fields in (False, True):
        document = make_app(ACTIVITY_FIELDS=fields).test_client(use_cookies=False).get("/api/openapi.json").json
        validate(document)
        session = document["components"]["schemas"]["Session"]
        assert ("lastSeenAt" in session["properties"]) is fields
        assert ("ip" in session["required"]) is fields
        admin = document["components"]["schemas"]["AdminSessionList"]["properties"]["sessions"]["items"]["$ref"]
        assert "lastSeenAt" in document["components"]["schemas"][admin.rsplit("/", 1)[1]]["properties"]


def test_the_admin_list_and_the_cli_show_activity(make_seeded):
    app = make_seeded()
    use(app.test_client(use_cookies=False))
    output = app.test_cli_runner().invoke(args=["list-sessions", "alice"]).output
    line = next(line for line in output.splitlines() if line.startswith("sess_abc123"))
    assert line.split("\t")[3] == "203.0.113.77" and line.split("\t")[2].endswith("Z")
    as_json = json.loads(app.test_cli_runner().invoke(args=["list-sessions", "alice", "--json"]).output)
    assert as_json[1]["ip"] == "203.0.113.77"


@sqlite_only
def test_a_busy_database_skips_the_write_and_never_fails_the_request(make_seeded, database_url):
    app = make_seeded()
    blocker = create_engine(database_url).raw_connection()
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        response = use(app.test_client(use_cookies=False))
        assert response.status_code == 200 and response.json["current"]["id"] == "sess_abc123"
        assert activity_of(app, "sess_abc123") == (None, None)
    finally:
        blocker.rollback()
        blocker.close()
    use(app.test_client(use_cookies=False))  # the next use writes it
    assert activity_of(app, "sess_abc123").ip == "203.0.113.77"


def test_the_real_server_records_activity_after_answering(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, SEED, workers=2,
                        env={"SESSIONS_ACTIVITY_FIELDS": "true"}).start()
    try:
        assert server.request("GET", "/api/auth/verify", cookie("cookie-def"))[0] == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            other = server.request("GET", SESSIONS, ALICE)[2]["other"][0]
            if other["lastSeenAt"] is not None:
                break
            time.sleep(0.05)
        assert other["id"] == "sess_def456" and other["ip"] == "127.0.0.1"
    finally:
        server.stop()
