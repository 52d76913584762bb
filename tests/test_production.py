"""What a long-running sidecar needs: security events, purging (login limits: test_ratelimit.py)."""


from conftest import IPHONE_SAFARI, cookie

from models import LoginSession
from zipline_sessions.storage.database import db

LOGIN = "/api/auth/login"
SESSIONS = "/api/user/sessions"
BAD = {"username": "alice", "password": "wrong"}


def attempt(app, body=BAD, **kwargs):
    return app.test_client(use_cookies=False).post(LOGIN, json=body, **kwargs)


def test_security_events_are_logged_without_secrets(app, client, security_events):
    client.post(LOGIN, json=BAD)
    login = client.post(LOGIN, json={"username": "alice", "password": "wonderland"},
                        headers={"User-Agent": IPHONE_SAFARI})
    token = login.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    client.delete(SESSIONS, headers=cookie(token), json={"sessionId": "sess_def456"})
    client.get("/api/auth/logout", headers=cookie(token))
    app.test_cli_runner().invoke(args=["purge-expired"])

    names = [event["event"] for event in security_events]
    # The iPhone is a device alice never signed in from (seeded sessions have no fingerprint).
    assert names == ["login.failure", "login.success", "login.new_device",
                     "sessions.purged",  # the login purged sess_old
                     "sessions.revoked", "logout", "sessions.purged"]
    events = {event["event"]: event for event in security_events[:6]}
    assert events["login.failure"]["user"] == "alice" and events["login.failure"]["address"] == "127.0.0.1"
    success = events["login.success"]
    assert (success["user"], success["client"], success["device"]) == ("alice", "Mobile Safari", "Mobile")
    assert events["sessions.revoked"]["revoked"] == ["sess_def456"]
    assert events["sessions.revoked"]["bySession"] == success["sessionId"]
    assert events["logout"]["sessionId"] == success["sessionId"]
    assert events["sessions.purged"]["count"] == 1
    assert events["login.new_device"]["user"] == "alice"
    assert security_events[6] == {**security_events[6], "count": 0, "address": "cli"}
    text = repr(security_events)
    for secret in (token, "wonderland", "wrong", "tok-alice", "cookie-abc"):
        assert secret not in text


def test_each_login_purges_a_bounded_batch_of_expired_sessions(app, client, runner, tmp_path):
    import json

    expired = [{"expiresAt": "2020-01-01T00:00:00Z"} for _ in range(150)]
    (tmp_path / "old.json").write_text(json.dumps({"users": [{"username": "ghost", "sessions": expired}]}))
    assert runner.invoke(args=["seed", str(tmp_path / "old.json")]).exit_code == 0
    assert _expired_count(app) == 151  # with alice's sess_old
    client.post(LOGIN, json={"username": "alice", "password": "wonderland"})
    assert _expired_count(app) == 51
    client.post(LOGIN, json={"username": "alice", "password": "wonderland"})
    assert _expired_count(app) == 0


def _expired_count(app) -> int:
    from zipline_sessions.storage.clock import utcnow

    with app.app_context():
        return db.session.query(LoginSession).filter(LoginSession.expires_at <= utcnow()).count()
