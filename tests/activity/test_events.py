"""Session events: written to the outbox with the change, delivered signed, at least once, in
order per user, retried until the receiver takes them, dead after SESSIONS_WEBHOOK_MAX_AGE."""

import json
import time
from datetime import timedelta

import pytest
from conftest import SEED, cookie
from live_server import LiveServer, free_port, wait_for
from receiver import Receiver, verify_signature
from sqlalchemy import select, update

import models
from zipline_sessions.activity import events, webhooks
from zipline_sessions.config.checks import ConfigError
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import db

SECRET = "test-secret-0123456789"
ALICE = {"Authorization": "tok-alice", **cookie("cookie-abc")}
SESSIONS = "/api/user/sessions"
ROOT = {"username": "root", "token": "tok-root", "admin": True,
        "sessions": [{"id": "sess_root", "token": "cookie-root", "expiresAt": "2099-01-01T00:00:00Z"}]}
WITH_ROOT = {"users": [*SEED["users"], ROOT]}


@pytest.fixture
def receiver():
    live = Receiver(SECRET).start()
    yield live
    live.stop()


@pytest.fixture
def hooked(make_app, receiver):
    """An app with a webhook to `receiver` (seeded with SEED and an admin), retrying fast."""
    app = make_app(WEBHOOK_URL=receiver.url, WEBHOOK_SECRET=SECRET, WEBHOOK_RETRY_BASE=0.01)
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(WITH_ROOT, app.config["TTL_SECONDS"], clock.utcnow()))
    return app


def outbox(app) -> list[dict]:
    with app.app_context():
        rows = db.session.execute(select(events.SessionEvent.__table__).order_by(events.SessionEvent.id)).all()
        db.session.commit()
    return [row._asdict() for row in rows]


def payloads(app) -> list[dict]:
    return [json.loads(row["payload"]) for row in outbox(app)]


def deliver(app) -> int:
    with app.app_context():
        return webhooks.deliver_due()


def deliver_all(app, rounds: int = 200) -> None:
    """Deliver until the outbox is empty (retries are 10 ms apart here)."""
    for _ in range(rounds):
        if not outbox(app):
            return
        if not deliver(app):
            time.sleep(0.01)
    raise AssertionError(f"still owed: {outbox(app)}")


def log_in(client, username="alice", password="wonderland"):
    response = client.post("/api/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200
    return response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def test_without_a_webhook_nothing_is_recorded(make_app):
    app = make_app()
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], clock.utcnow()))
    client = app.test_client(use_cookies=False)
    token = log_in(client)
    client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
    client.post("/api/auth/logout", headers=cookie(token))
    assert outbox(app) == []
    assert client.get("/api/health").json == {"status": "ok"}


def test_a_seed_emits_no_events(hooked):
    assert outbox(hooked) == []


def test_every_change_records_its_event_with_the_sessions_public_fields(hooked, security_events):
    client = hooked.test_client(use_cookies=False)
    token = log_in(client)
    client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
    client.delete("/api/admin/users/bob/sessions", headers={"Authorization": "tok-root"}, json={"all": True})
    client.post("/api/auth/logout", headers=cookie(token))
    runner = hooked.test_cli_runner()
    assert runner.invoke(args=["revoke", "root", "sess_root"]).exit_code == 0
    got = payloads(hooked)
    assert [(p["type"], p["user"]["username"], p["session"]["id"], p.get("reason")) for p in got] == [
        ("session.created", "alice", got[0]["session"]["id"], None),
        # The login purged alice's expired sess_old.
        ("session.expired", "alice", "sess_old", "ttl"),
        ("session.revoked", "alice", "sess_def456", "user"),
        ("session.revoked", "bob", "sess_bob1", "admin"),
        ("session.ended", "alice", got[0]["session"]["id"], None),
        ("session.revoked", "root", "sess_root", "operator"),
    ]
    revoked = got[2]
    assert list(revoked) == ["id", "type", "time", "user", "session", "reason"]
    assert revoked["user"] == {"id": 1, "username": "alice"}
    assert revoked["session"] == {"id": "sess_def456", "createdAt": "2024-03-14T08:15:00.000Z",
                                  "ua": SEED["users"][0]["sessions"][1]["ua"], "client": "Mobile Safari",
                                  "device": "Mobile", "lastSeenAt": None, "ip": None, "location": None}
    assert got[0]["session"]["ip"] == "127.0.0.1" and got[0]["session"]["lastSeenAt"] == got[0]["session"]["createdAt"]
    assert len({p["id"] for p in got}) == len(got)
    text = json.dumps(got)
    assert token not in text and "cookie-def" not in text and "hash" not in text


def test_expired_sessions_purged_by_the_cli_and_on_sight_are_events(hooked):
    client = hooked.test_client(use_cookies=False)
    assert client.get(SESSIONS, headers=cookie("cookie-old")).status_code == 401  # deleted on sight
    assert [(p["type"], p["session"]["id"]) for p in payloads(hooked)] == [("session.expired", "sess_old")]
    with hooked.app_context():
        db.session.execute(update(models.Session).where(models.Session.c.id == "sess_bob1")
                           .values(expires_at=clock.utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert hooked.test_cli_runner().invoke(args=["purge-expired"]).output == "Purged 1 expired session(s).\n"
    assert [(p["type"], p["user"]["username"]) for p in payloads(hooked)][1:] == [("session.expired", "bob")]


def test_a_failed_change_records_nothing(hooked):
    client = hooked.test_client(use_cookies=False)
    assert client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_bob1"}).status_code == 400
    assert outbox(hooked) == []


def test_delivery_is_a_signed_post_the_readme_check_accepts(hooked, receiver):
    client = hooked.test_client(use_cookies=False)
    client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
    queued = payloads(hooked)
    assert deliver(hooked) == 1
    [(event_id, status, valid, payload)] = receiver.attempts
    assert status == 204 and valid and payload == queued[0] and event_id == queued[0]["id"]
    assert outbox(hooked) == []  # taken: no longer owed


def test_the_readme_check_refuses_a_wrong_secret_a_changed_body_and_a_replay():
    body = b'{"id":"x"}'
    now = int(time.time())
    assert verify_signature(SECRET, webhooks.signature(SECRET, now, body), body)
    assert not verify_signature(SECRET, webhooks.signature("another-secret-0123456789", now, body), body)
    assert not verify_signature(SECRET, webhooks.signature(SECRET, now, body), body + b" ")
    assert not verify_signature(SECRET, webhooks.signature(SECRET, now - 3600, body), body)
    assert not verify_signature(SECRET, "", body)


def test_a_receiver_with_another_secret_refuses_every_delivery(make_app):
    wrong = Receiver("not-the-services-secret").start()
    try:
        app = make_app(WEBHOOK_URL=wrong.url, WEBHOOK_SECRET=SECRET, WEBHOOK_RETRY_BASE=0.01)
        with app.app_context():
            seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], clock.utcnow()))
        app.test_client(use_cookies=False).delete(SESSIONS, headers=ALICE, json={"all": True})
        deliver(app)
        assert [(status, valid) for _, status, valid, _ in wrong.attempts] == [(401, False)]
        assert outbox(app)[0]["attempts"] == 1 and outbox(app)[0]["last_error"] == "HTTP 401"
    finally:
        wrong.stop()


def test_failures_are_retried_with_backoff_then_delivered_once(hooked, receiver):
    receiver.fail_first = 3
    hooked.test_client(use_cookies=False).delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
    deliver(hooked)
    [owed] = outbox(hooked)
    assert owed["attempts"] == 1 and owed["last_error"] == "HTTP 503" and owed["lease_until"] is None
    assert owed["next_attempt_at"] > owed["created_at"]
    deliver_all(hooked)
    assert [status for _, status, _, _ in receiver.attempts] == [503, 503, 503, 204]
    assert len({event_id for event_id, _, _, _ in receiver.attempts}) == 1


def test_an_event_waits_for_its_retry_time(hooked, receiver):
    hooked.config["WEBHOOK_RETRY_BASE"] = 3600
    receiver.fail_first = 1
    hooked.test_client(use_cookies=False).delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
    assert deliver(hooked) == 1
    assert deliver(hooked) == 0  # not due for half an hour at least
    assert len(receiver.attempts) == 1


def test_backoff_doubles_up_to_the_cap_with_jitter():
    waits = [webhooks.backoff_seconds(attempt, 1.0) for attempt in range(1, 16)]
    assert all(2 ** (a - 1) * 0.5 <= w < 2 ** (a - 1) for a, w in enumerate(waits[:9], start=1))
    assert all(webhooks.RETRY_CAP_SECONDS * 0.5 <= w < webhooks.RETRY_CAP_SECONDS for w in waits[10:])


def test_a_users_events_are_delivered_in_order_one_at_a_time(hooked, receiver):
    receiver.fail_first = 2
    client = hooked.test_client(use_cookies=False)
    token = log_in(client, "alice")
    client.post("/api/auth/logout", headers=cookie(token))
    client.delete("/api/admin/users/bob/sessions", headers={"Authorization": "tok-root"}, json={"all": True})
    expected = [p["id"] for p in payloads(hooked)]
    deliver(hooked)
    # Alice's first event failed: her others wait behind it; Bob's went ahead (and failed too).
    first_tries = [event_id for event_id, _, _, _ in receiver.attempts]
    assert first_tries == [expected[0], expected[3]]
    deliver_all(hooked)
    accepted = [p["id"] for p in receiver.accepted()]
    assert sorted(accepted) == sorted(expected)
    alice = [p["id"] for p in receiver.accepted() if p["user"]["username"] == "alice"]
    assert alice == expected[:3]


def test_an_event_failing_past_max_age_is_dead_reported_and_retried_by_the_cli(hooked, receiver):
    receiver.fail_first = 1
    client = hooked.test_client(use_cookies=False)
    client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
    with hooked.app_context():  # queued a day ago
        db.session.execute(update(events.SessionEvent).values(queued_at=clock.utcnow() - timedelta(days=1)))
        db.session.commit()
    deliver(hooked)
    [dead] = outbox(hooked)
    assert dead["dead_at"] is not None
    assert deliver(hooked) == 0  # never tried again by itself
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.json == {"status": "ok", "events": {"pending": 0, "dead": 1}}
    runner = hooked.test_cli_runner()
    assert runner.invoke(args=["events"]).output == "0 pending, 1 dead.\n"
    failed = runner.invoke(args=["events", "--failed"]).output
    assert failed.startswith(dead["event_id"] + "\tsession.revoked\t1\t") and "HTTP 503" in failed
    assert runner.invoke(args=["events", "--retry"]).output == "Requeued 1 dead event(s).\n"
    assert client.get("/api/health").json["events"] == {"pending": 1, "dead": 0}
    deliver_all(hooked)
    assert [p["id"] for p in receiver.accepted()] == [dead["event_id"]]
    assert client.get("/api/health").json["events"] == {"pending": 0, "dead": 0}


def test_a_dead_event_no_longer_holds_back_the_users_next_ones(hooked, receiver):
    receiver.fail_first = 1
    client = hooked.test_client(use_cookies=False)
    client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
    with hooked.app_context():
        db.session.execute(update(events.SessionEvent).values(queued_at=clock.utcnow() - timedelta(days=1)))
        db.session.commit()
    deliver(hooked)
    log_in(client)
    deliver_all_but_dead(hooked)
    assert [p["type"] for p in receiver.accepted()] == ["session.created", "session.expired"]  # sess_old purged


def deliver_all_but_dead(app) -> None:
    for _ in range(200):
        if all(row["dead_at"] is not None for row in outbox(app)):
            return
        deliver(app)
        time.sleep(0.01)
    raise AssertionError("not delivered")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"WEBHOOK_URL": "ftp://files.example/hook", "WEBHOOK_SECRET": SECRET}, "SESSIONS_WEBHOOK_URL must be"),
    ({"WEBHOOK_URL": "http://127.0.0.1:9/hook"}, "SESSIONS_WEBHOOK_SECRET must be set"),
    ({"WEBHOOK_URL": "http://127.0.0.1:9/hook", "WEBHOOK_SECRET": "short"}, "at least 16"),
    ({"WEBHOOK_MAX_AGE": 0}, "SESSIONS_WEBHOOK_MAX_AGE must be a positive"),
    ({"WEBHOOK_RETRY_BASE": "fast"}, "SESSIONS_WEBHOOK_RETRY_BASE must be a positive"),
    ({"WEBHOOK_DEADLINE": 0}, "SESSIONS_WEBHOOK_DEADLINE must be a number of seconds above 0 and at most 300"),
    ({"WEBHOOK_DEADLINE": 301}, "SESSIONS_WEBHOOK_DEADLINE must be"),
    ({"WEBHOOK_DEADLINE": "slow"}, "SESSIONS_WEBHOOK_DEADLINE must be"),
    ({"TOUCH_SECONDS": -1}, "SESSIONS_TOUCH_SECONDS must be"),
    ({"IP_MODE": "partial"}, "SESSIONS_IP_MODE must be one of full, truncate, off"),
    ({"ACTIVITY_FIELDS": "yes"}, "SESSIONS_ACTIVITY_FIELDS must be true or false"),
])
def test_settings_are_checked(make_app, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_app(**overrides)


def test_the_secret_is_never_shown_in_the_error(make_app):
    with pytest.raises(ConfigError) as error:
        make_app(WEBHOOK_URL="http://127.0.0.1:9/hook", WEBHOOK_SECRET="sekrit")
    assert "sekrit" not in str(error.value)


# The real server: Granian workers, each with its delivery thread.

LIVE_ENV = {"SESSIONS_WEBHOOK_SECRET": SECRET, "SESSIONS_WEBHOOK_RETRY_BASE": "0.2"}


def test_several_workers_deliver_each_event_once_in_order_per_user(tmp_path, database_url, receiver):
    users = [{"username": f"u{n}", "password": f"pw-{n}"} for n in range(4)]
    server = LiveServer(tmp_path, database_url, {"users": users}, workers=3,
                        env={**LIVE_ENV, "SESSIONS_WEBHOOK_URL": receiver.url}).start()
    try:
        receiver.fail_first = 2
        expected = 0
        for round_ in range(3):
            for n in range(4):
                status, headers, _ = server.request("POST", "/api/auth/login",
                                                    body={"username": f"u{n}", "password": f"pw-{n}"})
                assert status == 200
                token = headers["Set-Cookie"].split(";")[0]
                assert server.request("POST", "/api/auth/logout", {"Cookie": token})[0] == 200
                expected += 2
        wait_for(lambda: len(receiver.accepted()) >= expected, "every event")
        time.sleep(1)  # a duplicate, if any, would arrive now
        accepted = receiver.accepted()
        assert len(accepted) == expected
        assert len({p["id"] for p in accepted}) == expected  # each once
        for n in range(4):
            mine = [(p["type"], p["session"]["id"]) for p in accepted if p["user"]["username"] == f"u{n}"]
            # created, ended, created, ended ... each session's pair in order.
            assert [kind for kind, _ in mine] == ["session.created", "session.ended"] * 3
            assert all(mine[i][1] == mine[i + 1][1] for i in range(0, 6, 2))
        assert server.request("GET", "/api/health")[2] == {"status": "ok", "events": {"pending": 0, "dead": 0}}
    finally:
        server.stop()


def test_a_revocation_answered_before_a_crash_is_delivered_after_the_restart(tmp_path, database_url):
    port = free_port()  # the receiver is down: nothing listens here yet
    env = {**LIVE_ENV, "SESSIONS_WEBHOOK_URL": f"http://127.0.0.1:{port}/hooks/sessions"}
    server = LiveServer(tmp_path, database_url, SEED, workers=2, env=env).start()
    status, _, body = server.request("DELETE", SESSIONS, ALICE, {"sessionId": "sess_def456"})
    assert status == 200 and body["other"] == []
    server.kill()  # SIGKILL: master and workers, before any delivery succeeded
    receiver = Receiver(SECRET, port=port).start()
    try:
        restarted = LiveServer(tmp_path, database_url, None, workers=2, env=env).start()
        try:
            wait_for(lambda: receiver.accepted(), "the revocation's event")
            [event] = receiver.accepted()
            assert (event["type"], event["session"]["id"], event["reason"]) == ("session.revoked", "sess_def456", "user")
        finally:
            restarted.stop()
    finally:
        receiver.stop()


def test_a_request_never_waits_on_a_receiver_that_hangs(tmp_path, database_url):
    import socket

    hanging = socket.socket()  # accepts connections, never answers
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(16)
    env = {**LIVE_ENV, "SESSIONS_WEBHOOK_URL": f"http://127.0.0.1:{hanging.getsockname()[1]}/hook"}
    server = LiveServer(tmp_path, database_url, SEED, workers=1, env=env).start()
    try:
        for session_id in ("sess_def456",):
            assert server.request("DELETE", SESSIONS, ALICE, {"sessionId": session_id})[0] == 200
        # While the worker's delivery thread is stuck in its POST, requests are answered.
        for _ in range(5):
            assert server.request("GET", SESSIONS, ALICE)[0] == 200
        assert server.request("GET", "/api/health")[2]["events"]["pending"] == 1
    finally:
        server.stop()  # SIGTERM: the delivery thread does not hold the worker up
        hanging.close()


# A receiver that answers one byte at a time: the deadline is for the whole attempt, not per read.

def test_a_receiver_dripping_its_answer_is_cut_off_at_the_deadline():
    slow = Receiver(SECRET, drip_seconds=0.25).start()  # its 2xx answer would take about a minute
    try:
        error = webhooks.post(slow.url, SECRET, "evt-1", b"{}", deadline=1)
        assert error == "no complete answer within the 1 s deadline"
        assert slow.cut_off.wait(30)  # the connection was closed under it, not left open
    finally:
        slow.stop()


def test_the_delivery_thread_gives_up_on_a_dripping_receiver_and_retries(tmp_path, database_url, make_app):
    slow = Receiver(SECRET, drip_seconds=0.25).start()
    env = {**LIVE_ENV, "SESSIONS_WEBHOOK_URL": slow.url, "SESSIONS_WEBHOOK_DEADLINE": "1"}
    server = LiveServer(tmp_path, database_url, SEED, workers=1, env=env).start()
    try:
        assert server.request("DELETE", SESSIONS, ALICE, {"sessionId": "sess_def456"})[0] == 200
        app = make_app()  # to read the outbox
        # Each attempt ends at the deadline, so the one worker's thread tries again and again;
        # with only a per-read limit the first attempt would still be running.
        wait_for(lambda: (outbox(app) or [{"attempts": 0}])[0]["attempts"] >= 3, "three attempts")
        [row] = outbox(app)
        assert row["last_error"] == "no complete answer within the 1 s deadline"
        assert len(slow.attempts) >= 3 and all(valid for _, _, valid, _ in slow.attempts)
    finally:
        server.stop()
        slow.stop()


def test_a_receiver_answering_an_endless_body_is_read_no_further_than_its_status():
    from http.server import BaseHTTPRequestHandler

    from live_server import loopback_http_server

    class Endless(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000000\r\n\r\n")
            try:
                while True:
                    self.wfile.write(b"x" * 65536)
            except OSError:
                pass

        def log_message(self, *args):
            pass

    with loopback_http_server(Endless) as port:
        # The 2xx counts; the 100 GB that follow are neither read into memory nor waited for.
        assert webhooks.post(f"http://127.0.0.1:{port}/hook", SECRET, "evt-2", b"{}", deadline=30) is None
