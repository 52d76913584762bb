"""SESSIONS_MAX_PER_USER_POLICY: evict-oldest (the default) or refuse, where a login beyond
SESSIONS_MAX_PER_USER is a 403 naming the cap that opens nothing, except the browser's own rotation."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import SEED, assert_error, cookie
from live_server import LiveServer
from sqlalchemy import func, select

import models
from zipline_sessions.auth import accounts
from zipline_sessions.config.checks import ConfigError
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import db

LOGIN, SESSIONS = "/api/auth/login", "/api/user/sessions"
ALICE = {"username": "alice", "password": "wonderland"}
REFUSED = "Session limit reached: at most 2 live sessions per user. Log out of one, or revoke one, before logging in again."


@pytest.fixture
def capped(make_app):
    """alice (SEED) at the cap of 2 live sessions (her third is expired), refusing beyond it."""
    def make(**overrides):
        app = make_app(MAX_PER_USER=2, MAX_PER_USER_POLICY="refuse", **overrides)
        with app.app_context():
            seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], clock.utcnow()))
        return app
    return make


def session_ids(app, username="alice") -> list[str]:
    with app.app_context():
        user_id = accounts.find_user_by_name(username).id
        ids = db.session.execute(select(models.Session.c.id).where(models.Session.c.user_id == user_id)
                                 .order_by(models.Session.c.id)).scalars().all()
        db.session.commit()
    return ids


def test_a_login_beyond_the_cap_is_refused_and_opens_nothing(capped, security_events):
    app = capped()
    client = app.test_client(use_cookies=False)
    before = session_ids(app)
    response = client.post(LOGIN, json=ALICE)
    assert_error(response, 403, "Forbidden", REFUSED)
    assert "Set-Cookie" not in response.headers
    assert session_ids(app) == before  # nothing opened, nothing ended (the expired one not even purged)
    assert [e for e in security_events if e["event"] == "login.refused"] == [
        {**security_events[-1], "event": "login.refused", "user": "alice", "userId": 1, "limit": 2}]
    assert not [e for e in security_events if e["event"] == "login.success"]


def test_a_refused_login_leaves_no_event_and_other_users_log_in(capped):
    app = capped(WEBHOOK_URL="http://127.0.0.1:9/hook", WEBHOOK_SECRET="s" * 16)
    client = app.test_client(use_cookies=False)
    assert client.post(LOGIN, json=ALICE).status_code == 403
    with app.app_context():
        assert db.session.execute(select(func.count()).select_from(models.db.metadata.tables["session_events"])
                                  ).scalar_one() == 0
        db.session.commit()
    with app.app_context():
        accounts.set_password_hash(accounts.find_user_by_name("bob").id, accounts.find_user_by_name("alice").password_hash)
        db.session.commit()
    assert client.post(LOGIN, json={"username": "bob", "password": "wonderland"}).status_code == 200


def test_the_browsers_own_rotation_is_never_refused(capped):
    app = capped()
    client = app.test_client(use_cookies=False)
    response = client.post(LOGIN, json=ALICE, headers=cookie("cookie-abc"))  # alice's own live session
    assert response.status_code == 200
    assert "sess_abc123" not in session_ids(app) and len(session_ids(app)) == 2  # + the expired one, purged
    new = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert client.get(SESSIONS, headers=cookie(new)).status_code == 200


@pytest.mark.parametrize("presented", ["cookie-bob", "cookie-old", "not-a-session"],
                         ids=["another-users", "expired", "unknown"])
def test_a_cookie_that_is_not_the_users_live_session_does_not_open_the_door(capped, presented):
    app = capped()
    response = app.test_client(use_cookies=False).post(LOGIN, json=ALICE, headers=cookie(presented))
    assert_error(response, 403, "Forbidden", REFUSED)
    assert "sess_bob1" in session_ids(app, "bob")


def test_below_the_cap_a_login_opens_and_expired_sessions_do_not_count(capped):
    app = capped()
    client = app.test_client(use_cookies=False)
    assert client.delete(SESSIONS, json={"sessionId": "sess_def456"}, headers={"Authorization": "tok-alice"}
                         ).status_code == 200
    assert client.post(LOGIN, json=ALICE).status_code == 200  # 1 live (and 1 expired) below 2
    assert_error(client.post(LOGIN, json=ALICE), 403, "Forbidden", REFUSED)


def test_the_zipline_profile_answers_it_in_its_shape(capped):
    response = capped(ERROR_PROFILE="zipline-v4").test_client(use_cookies=False).post(LOGIN, json=ALICE)
    assert response.status_code == 403
    assert response.json == {"error": f"E9001: {REFUSED}", "code": 9001, "statusCode": 403}


def test_evict_oldest_is_the_default(make_app):
    assert make_app().config["MAX_PER_USER_POLICY"] == "evict-oldest"


@pytest.mark.parametrize("value", ["refuse-new", "EVICT-OLDEST", "", "deny"])
def test_an_unknown_policy_stops_the_start(make_app, value):
    with pytest.raises(ConfigError) as refused:
        make_app(MAX_PER_USER_POLICY=value)
    assert refused.value.message == ("SESSIONS_MAX_PER_USER_POLICY must be one of evict-oldest, refuse, "
                                     f"not {value!r}")


def test_logins_racing_at_the_cap_open_exactly_the_free_places(tmp_path, database_url):
    """12 logins at once, 3 workers, one free place: one opens, eleven are refused, on every database."""
    seed = {"users": [{"username": "alice", "password": "wonderland",
                       "sessions": [{"token": "held", "expiresAt": "2099-01-01T00:00:00Z"}]}]}
    server = LiveServer(tmp_path, database_url, seed, workers=3,
                        # Every login waits for its hash (the race is at the cap, not at the hashing queue).
                        env={"SESSIONS_MAX_PER_USER": "2", "SESSIONS_MAX_PER_USER_POLICY": "refuse",
                             "SESSIONS_HASH_QUEUE": "12", "SESSIONS_HASH_QUEUE_WAIT": "60"}).start()
    try:
        barrier = threading.Barrier(12)

        def log_in(n):
            barrier.wait()
            return server.request("POST", LOGIN, {"User-Agent": f"racer-{n}"}, ALICE)[0]

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = sorted(pool.map(log_in, range(12)))
        assert statuses == [200] + [403] * 11, statuses
        listing = server.request("GET", SESSIONS, {"Cookie": "zipline_token=held"})[2]
        assert len(listing["other"]) == 1  # the held session and the one that got in
    finally:
        server.stop()
