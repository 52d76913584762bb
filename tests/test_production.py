"""What a long-running sidecar needs: shared rate limits, proxies, security events, purging."""

import secrets

from conftest import IPHONE_SAFARI, cookie
from test_errors import assert_error

from database import db
from models import LoginSession

LOGIN = "/api/auth/login"
SESSIONS = "/api/user/sessions"
BAD = {"username": "alice", "password": "wrong"}


def attempt(app, body=BAD, **kwargs):
    return app.test_client(use_cookies=False).post(LOGIN, json=body, **kwargs)


def test_in_memory_limits_are_per_process(make_app):
    first, second = make_app(LOGIN_RATE_LIMIT="2 per minute"), make_app(LOGIN_RATE_LIMIT="2 per minute")
    assert [attempt(first).status_code for _ in range(3)] == [401, 401, 429]
    assert attempt(second).status_code == 401


def test_redis_shares_the_login_count_between_workers(make_app, redis_url):
    shared = {"LOGIN_RATE_LIMIT": "2 per minute", "RATELIMIT_STORAGE_URL": redis_url,
              "RATELIMIT_KEY_PREFIX": f"test-{secrets.token_hex(6)}"}
    first, second = make_app(**shared), make_app(**shared)
    assert [attempt(first).status_code for _ in range(2)] == [401, 401]
    limited = attempt(second)
    assert_error(limited, 429, "Too Many Requests", "Too many login attempts, try again later.")
    assert int(limited.headers["Retry-After"]) > 0


def test_forwarded_for_counts_only_behind_trusted_proxies(make_app):
    direct = make_app(LOGIN_RATE_LIMIT="1 per minute")
    spoofed = [attempt(direct, {"username": f"u{n}", "password": "x"},
                       headers={"X-Forwarded-For": f"10.0.0.{n}"}).status_code for n in range(2)]
    assert spoofed == [401, 429]  # the header is ignored: one address

    proxied = make_app(LOGIN_RATE_LIMIT="1 per minute", TRUSTED_PROXIES=1)
    distinct = [attempt(proxied, {"username": f"u{n}", "password": "x"},
                        headers={"X-Forwarded-For": f"10.0.0.{n}"}).status_code for n in range(2)]
    assert distinct == [401, 401]  # two clients behind one proxy


def test_security_events_are_logged_without_secrets(app, client, security_events):
    client.post(LOGIN, json=BAD)
    login = client.post(LOGIN, json={"username": "alice", "password": "wonderland"},
                        headers={"User-Agent": IPHONE_SAFARI})
    token = login.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    client.delete(SESSIONS, headers=cookie(token), json={"sessionId": "sess_def456"})
    client.get("/api/auth/logout", headers=cookie(token))
    app.test_cli_runner().invoke(args=["purge-expired"])

    names = [event["event"] for event in security_events]
    assert names == ["login.failure", "login.success", "sessions.purged",  # the login purged sess_old
                     "sessions.revoked", "logout", "sessions.purged"]
    events = {event["event"]: event for event in security_events[:5]}
    assert events["login.failure"]["user"] == "alice" and events["login.failure"]["address"] == "127.0.0.1"
    success = events["login.success"]
    assert (success["user"], success["client"], success["device"]) == ("alice", "Mobile Safari", "Mobile")
    assert events["sessions.revoked"]["revoked"] == ["sess_def456"]
    assert events["sessions.revoked"]["bySession"] == success["sessionId"]
    assert events["logout"]["sessionId"] == success["sessionId"]
    assert events["sessions.purged"]["count"] == 1
    assert security_events[5] == {**security_events[5], "count": 0, "address": "cli"}
    text = repr(security_events)
    for secret in (token, "wonderland", "wrong", "tok-alice", "cookie-abc"):
        assert secret not in text


def test_rate_limited_attempts_are_logged(make_app, security_events):
    app = make_app(LOGIN_RATE_LIMIT="1 per minute")
    attempt(app)
    attempt(app)
    assert [event["event"] for event in security_events] == ["login.failure", "login.rate_limited"]
    assert security_events[1]["user"] == "alice"


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
    from models import utcnow

    with app.app_context():
        return db.session.query(LoginSession).filter(LoginSession.expires_at <= utcnow()).count()
