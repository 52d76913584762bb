"""Login limits: per (username, address), per address, per-username backstop; shared, fail closed."""

import secrets
import threading
from datetime import timedelta

import pytest
from conftest import REDIS_URL, SEED, assert_error
from live_server import LiveServer, free_port
from sqlalchemy import func, select, update

from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.security.attempts import LoginAttempt
from zipline_sessions.security.ratelimit import client_address
from zipline_sessions.storage.clock import utcnow
from zipline_sessions.storage.database import db

LOGIN = "/api/auth/login"
TOO_MANY = "Too many login attempts, try again later."
ATTACKER, VICTIM = "203.0.113.7", "198.51.100.2"


@pytest.fixture(params=["database", "redis"])
def limited_app(request, make_app):
    """An app with login limits on, counting in the database or in the test Redis; seeded with SEED."""
    storage, seeded = {}, []
    if request.param == "redis":
        if not REDIS_URL:
            pytest.skip("SESSIONS_TEST_REDIS_URL is not set (.ci/run sets it)")
        storage = {"RATELIMIT_STORAGE_URL": REDIS_URL, "RATELIMIT_KEY_PREFIX": f"test-{secrets.token_hex(6)}"}

    def make(**overrides):
        app = make_app(**{"LOGIN_RATE_LIMIT": "10 per minute", **storage, **overrides})
        if not seeded:  # the database is the test's: seed it once
            with app.app_context():
                seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], utcnow()))
            seeded.append(app)
        return app

    return make


def attempt(app, username="alice", password="wrong", address="127.0.0.1", forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return app.test_client(use_cookies=False).post(LOGIN, json={"username": username, "password": password},
                                                   headers=headers, environ_base={"REMOTE_ADDR": address})


def statuses(app, count, **kwargs) -> list[int]:
    return [attempt(app, **kwargs).status_code for _ in range(count)]


def assert_too_many(response, longest_wait: int):
    assert_error(response, 429, "Too Many Requests", TOO_MANY)
    assert 0 < int(response.headers["Retry-After"]) <= longest_wait


def test_the_eleventh_attempt_within_the_minute_is_refused(limited_app, security_events):
    app = limited_app()
    assert statuses(app, 10) == [401] * 10
    assert_too_many(attempt(app), 60)
    refused = security_events[-1]
    assert (refused["event"], refused["user"], refused["key"]) == ("login.rate_limited", "alice", "username+address")
    assert refused["limit"] == "10 per minute"


def test_a_stranger_cannot_lock_a_user_out(limited_app):
    # A low backstop: if refused attempts counted against the username, the victim would be refused.
    app = limited_app(TRUSTED_PROXIES=1, LOGIN_USERNAME_RATE_LIMIT="15 per hour")
    assert statuses(app, 10, forwarded=ATTACKER) == [401] * 10
    assert statuses(app, 20, forwarded=ATTACKER) == [429] * 20
    assert attempt(app, password="wonderland", forwarded=VICTIM).status_code == 200
    assert attempt(app, username="bob", forwarded=ATTACKER).status_code == 401  # the pair, not the address


def test_the_address_limit_counts_every_username(limited_app, security_events):
    app = limited_app(LOGIN_ADDRESS_RATE_LIMIT="3 per minute")
    assert [attempt(app, username=f"u{n}").status_code for n in range(3)] == [401] * 3
    assert_too_many(attempt(app, username="u3"), 60)
    assert security_events[-1]["key"] == "address"
    assert attempt(app, username="u3", address=VICTIM).status_code == 401


def test_the_username_backstop_counts_every_address(limited_app, security_events):
    app = limited_app(LOGIN_USERNAME_RATE_LIMIT="3 per hour")
    assert [attempt(app, address=f"192.0.2.{n}").status_code for n in range(3)] == [401] * 3
    refused = attempt(app, address="192.0.2.99")
    assert_too_many(refused, 3600)
    assert int(refused.headers["Retry-After"]) > 60  # the hour's window, not a minute's
    assert security_events[-1]["key"] == "username"
    assert attempt(app, username="bob", address="192.0.2.99").status_code == 401


def test_every_limit_of_a_multi_limit_setting_counts(limited_app):
    app = limited_app(LOGIN_RATE_LIMIT="5 per minute; 2 per hour")
    answers = [attempt(app) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [401, 401, 429]
    # The hour's window is the one to wait for, and only the refusal says so.
    assert 60 < int(answers[2].headers["Retry-After"]) <= 3600
    assert "Retry-After" not in answers[0].headers
    assert not [name for name, _ in answers[0].headers.items() if name.lower().startswith("x-ratelimit")]


def test_a_key_set_off_is_not_counted(limited_app):
    app = limited_app(LOGIN_RATE_LIMIT="1 per minute", LOGIN_ADDRESS_RATE_LIMIT="off")
    assert [attempt(app, username=f"u{n}").status_code for n in range(5)] == [401] * 5


def test_forwarded_for_counts_only_behind_trusted_proxies(limited_app):
    direct = limited_app(LOGIN_ADDRESS_RATE_LIMIT="1 per minute")
    spoofed = [attempt(direct, username=f"u{n}", forwarded=f"10.0.0.{n}").status_code for n in range(2)]
    assert spoofed == [401, 429]  # the header is ignored: one address

    proxied = limited_app(LOGIN_ADDRESS_RATE_LIMIT="1 per minute", TRUSTED_PROXIES=1)
    distinct = [attempt(proxied, username=f"u{n}", forwarded=f"10.0.0.{n}").status_code for n in range(2)]
    assert distinct == [401, 401]  # two clients behind one proxy


def test_an_ipv6_client_is_counted_by_its_slash_64(limited_app):
    app = limited_app(LOGIN_ADDRESS_RATE_LIMIT="1 per minute")
    assert attempt(app, username="u1", address="2001:db8::1").status_code == 401
    assert attempt(app, username="u2", address="2001:db8::ffff:2").status_code == 429
    assert attempt(app, username="u3", address="2001:db8:0:1::1").status_code == 401


@pytest.mark.parametrize(("address", "counted_as"), [
    ("192.0.2.1", "192.0.2.1"), ("::ffff:192.0.2.1", "192.0.2.1"), ("2001:db8::1", "2001:db8::/64"),
    ("", ""), (None, ""),
])
def test_client_address(address, counted_as):
    assert client_address(address) == counted_as


def test_the_limit_holds_under_parallel_attempts(limited_app):
    app = limited_app(HASH_QUEUE=16, HASH_QUEUE_WAIT=60)  # every counted attempt gets its hash
    answers, start = [], threading.Barrier(16)

    def one():
        start.wait()
        answers.append(attempt(app).status_code)

    threads = [threading.Thread(target=one) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [401] * 10 + [429] * 6


def test_in_memory_limits_are_per_process(make_app):
    config = {"LOGIN_RATE_LIMIT": "2 per minute", "RATELIMIT_STORAGE_URL": "memory://"}
    first, second = make_app(**config), make_app(**config)
    assert statuses(first, 3) == [401, 401, 429]
    assert attempt(second).status_code == 401


# The database counter: its windows, its table.

def _rows(app) -> list:
    with app.app_context():
        return db.session.execute(select(LoginAttempt).order_by(LoginAttempt.key)).scalars().all()


def _set_window_end(app, resets_at) -> None:
    with app.app_context():
        db.session.execute(update(LoginAttempt).values(resets_at=resets_at))
        db.session.commit()


@pytest.mark.parametrize("limited_app", ["database"], indirect=True)
def test_a_window_starts_at_the_first_attempt_it_counts(limited_app):
    app = limited_app(LOGIN_RATE_LIMIT="3 per hour", LOGIN_ADDRESS_RATE_LIMIT="100 per hour",
                      LOGIN_USERNAME_RATE_LIMIT="100 per hour")
    before = utcnow()
    attempt(app)
    after = utcnow()
    rows = _rows(app)
    assert len(rows) == 3  # username+address, address, username
    assert all(before + timedelta(hours=1) <= row.resets_at <= after + timedelta(hours=1) for row in rows)
    assert statuses(app, 3) == [401, 401, 429]
    # The window ends 5 s from now: the refusal says so, and the window is not cut at a clock hour.
    _set_window_end(app, utcnow() + timedelta(seconds=5))
    assert int(attempt(app).headers["Retry-After"]) <= 5
    # Once it is over, the next attempt starts a new window of its own, counted from 1.
    _set_window_end(app, utcnow() - timedelta(seconds=1))
    before = utcnow()
    assert statuses(app, 3) == [401, 401, 401]
    assert attempt(app).status_code == 429
    assert all(row.resets_at >= before + timedelta(hours=1) for row in _rows(app))


@pytest.mark.parametrize("limited_app", ["database"], indirect=True)
def test_keys_are_bounded_hashes_and_stale_rows_are_purged_in_batches(limited_app):
    app = limited_app()
    long_name = "x" * 10_000
    attempt(app, username=long_name)
    keys = [row.key for row in _rows(app)]
    assert len(keys) == 3 and all(len(key) == 64 and int(key, 16) >= 0 for key in keys)
    with app.app_context():
        stale = utcnow() - timedelta(minutes=1)
        db.session.execute(LoginAttempt.__table__.insert(), [
            {"key": f"{n:064x}", "attempts": 1, "resets_at": stale} for n in range(150)])
        db.session.commit()
    counts = []
    for _ in range(2):
        attempt(app)
        with app.app_context():
            query = select(func.count()).select_from(LoginAttempt).where(LoginAttempt.resets_at <= utcnow())
            counts.append(db.session.execute(query).scalar())
    assert counts == [50, 0]


# The Redis counter's windows, and a Redis that does not answer.

def test_redis_windows_start_at_the_first_attempt(make_app, redis_url):
    import redis

    prefix = f"test-{secrets.token_hex(6)}"
    app = make_app(LOGIN_RATE_LIMIT="3 per hour", LOGIN_ADDRESS_RATE_LIMIT="100 per hour",
                   LOGIN_USERNAME_RATE_LIMIT="100 per hour", RATELIMIT_STORAGE_URL=redis_url,
                   RATELIMIT_KEY_PREFIX=prefix)
    attempt(app)
    client = redis.from_url(redis_url)
    keys = client.keys(f"*{prefix}*")
    assert len(keys) == 3
    # A clock-aligned hour would have a random part of the hour left, not (nearly) all of it.
    assert all(client.ttl(key) > 3600 - 60 for key in keys)
    assert statuses(app, 3) == [401, 401, 429]
    for key in keys:
        client.expire(key, 5)
    assert int(attempt(app).headers["Retry-After"]) <= 5
    client.delete(*keys)
    client.close()
    assert make_app(RATELIMIT_STORAGE_URL=redis_url, LOGIN_RATE_LIMIT="3 per hour").test_client().get(
        "/api/health").status_code == 200


def test_a_redis_that_does_not_answer_fails_closed_with_503(make_app, caplog):
    nowhere = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    app = make_app(LOGIN_RATE_LIMIT="10 per minute", RATELIMIT_STORAGE_URL=nowhere)
    client = app.test_client()
    health = client.get("/api/health")
    assert_error(health, 503, "Service Unavailable", "Login limit storage unavailable")
    login = client.post(LOGIN, json={"username": "alice", "password": "wonderland"})
    assert_error(login, 503, "Service Unavailable", "Login limit storage unavailable")
    assert "hunter2" not in health.get_data(as_text=True) + login.get_data(as_text=True) + caplog.text


def test_with_limits_off_a_dead_redis_is_not_asked(make_app):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    client = make_app(RATELIMIT_STORAGE_URL=nowhere, TOKEN_RESET_RATE_LIMIT="off").test_client()  # LOGIN_RATE_LIMIT off
    assert client.get("/api/health").status_code == 200


def test_the_token_reset_limit_alone_fails_closed_on_a_dead_redis(make_seeded_app):
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    client = make_seeded_app(RATELIMIT_STORAGE_URL=nowhere).test_client()  # LOGIN_RATE_LIMIT off
    assert_error(client.get("/api/health"), 503, "Service Unavailable", "Login limit storage unavailable")
    reset = client.patch("/api/user/token", headers={"Authorization": "tok-alice"})
    assert_error(reset, 503, "Service Unavailable", "Login limit storage unavailable")
    assert client.get("/api/user/sessions", headers={"Authorization": "tok-alice"}).status_code == 200


# Real worker processes.

@pytest.mark.parametrize("storage", ["database", "redis"])
def test_the_count_holds_across_workers_and_restarts(tmp_path, database_url, storage):
    env = {"SESSIONS_LOGIN_RATE_LIMIT": "10 per minute"}
    if storage == "redis":
        if not REDIS_URL:
            pytest.skip("SESSIONS_TEST_REDIS_URL is not set (.ci/run sets it)")
        env |= {"SESSIONS_RATELIMIT_STORAGE_URL": REDIS_URL, "SESSIONS_RATELIMIT_KEY_PREFIX": f"test-{secrets.token_hex(6)}"}
    body = {"username": "alice", "password": "wrong"}
    server = LiveServer(tmp_path, database_url, SEED, workers=3, env=env).start()
    try:
        assert [server.request("POST", LOGIN, body=body)[0] for _ in range(10)] == [401] * 10
        # Each on a new connection, so any of the three workers may answer: all refuse.
        refusals = [server.request("POST", LOGIN, body=body) for _ in range(6)]
        assert [status for status, _, _ in refusals] == [429] * 6
        assert refusals[0][2] == {"statusCode": 429, "error": "Too Many Requests", "message": TOO_MANY}
    finally:
        server.stop()
    restarted = LiveServer(tmp_path, database_url, None, workers=3, env=env).start()
    try:
        status, headers, _ = restarted.request("POST", LOGIN, body=body)
        assert status == 429 and 0 < int(headers["Retry-After"]) <= 60
    finally:
        restarted.stop()
