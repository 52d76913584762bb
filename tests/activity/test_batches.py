"""Last activity in batches: each server worker writes its sessions' uses in one transaction per
SESSIONS_ACTIVITY_FLUSH_SECONDS, flushes on a graceful stop, and a SIGKILL loses at most the
uses of the last interval, never a session or a revocation."""

import os
import threading
import time

import pytest
from conftest import SEED, cookie, sqlite_only
from live_server import LiveServer
from sqlalchemy import create_engine, select

import models
from zipline_sessions.activity import last_seen
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.security import credentials
from zipline_sessions.storage import clock

SESSIONS = "/api/user/sessions"
ALICE = {"Authorization": "tok-alice", **cookie("cookie-abc")}
LONG = "60"  # SESSIONS_ACTIVITY_FLUSH_SECONDS that no test outlasts: only a stop flushes


@pytest.fixture
def batched(make_app):
    """A seeded app whose activity is batched as in a server worker, flushed only when stopped."""
    app = make_app(ACTIVITY_FLUSH_SECONDS=int(LONG))
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], clock.utcnow()))
    last_seen.start_in_worker(app)
    yield app
    app.extensions["activity"].flusher.stop()


def activity(database_url) -> dict:
    """{session id: (last_seen_at, ip)} as stored, read from outside the service."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(models.Session.c.id, models.Session.c.last_seen_at,
                                             models.Session.c.ip)).all()
    finally:
        engine.dispose()
    return {row.id: (row.last_seen_at, row.ip) for row in rows}


def get(client, headers, address):
    response = client.get(SESSIONS, headers=headers, environ_base={"REMOTE_ADDR": address})
    response.close()
    return response


def test_uses_wait_in_the_buffer_one_per_session_and_never_revive_a_revoked_session(batched, database_url):
    client = batched.test_client(use_cookies=False)
    assert get(client, cookie("cookie-def"), "203.0.113.3").status_code == 200
    assert client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"},
                         environ_base={"REMOTE_ADDR": "203.0.113.1"}).status_code == 200
    get(client, ALICE, "203.0.113.2")  # not yet written, so due again: the newer use wins
    assert batched.extensions["activity"].pending.keys() == {"sess_abc123", "sess_def456"}
    assert activity(database_url)["sess_abc123"] == (None, None)  # nothing written per request
    batched.extensions["activity"].flusher.stop()  # a graceful stop: the last batch
    stored = activity(database_url)
    assert stored["sess_abc123"][1] == "203.0.113.2"
    assert "sess_def456" not in stored  # its use was buffered; the revocation stands


def test_the_batch_writer_runs_below_the_request_threads(batched):
    """A batch shares the worker's CPU with requests: its thread runs at the hashing threads'
    lower priority, so it does not lengthen the answers it overlaps."""
    flusher = batched.extensions["activity"].flusher
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    lower = min(19, own + credentials.HASH_THREAD_NICENESS)
    deadline = time.monotonic() + 5  # the thread lowers itself as it starts
    niceness = own
    while niceness != lower and time.monotonic() < deadline:
        time.sleep(0.01)
        if flusher.native_id is not None:
            niceness = os.getpriority(os.PRIO_PROCESS, flusher.native_id)
    assert niceness == lower


@sqlite_only
def test_a_busy_database_keeps_the_batch_for_the_next_flush(batched, database_url):
    get(batched.test_client(use_cookies=False), ALICE, "203.0.113.9")
    seen = batched.extensions["activity"]
    blocker = create_engine(database_url).raw_connection()
    try:
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
        assert seen.flush() == 0
    finally:
        blocker.rollback()
        blocker.close()
    assert seen.flush() == 1
    assert activity(database_url)["sess_abc123"][1] == "203.0.113.9"


def use_on_every_worker(server, headers: dict, times: int = 40) -> None:
    """Requests on fresh connections, which the kernel spreads over the workers (SO_REUSEPORT)."""
    for _ in range(times):
        assert server.request("GET", "/api/auth/verify", headers)[0] == 200


def test_a_graceful_stop_writes_each_workers_last_batch(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, SEED, workers=2,
                        env={"SESSIONS_ACTIVITY_FLUSH_SECONDS": LONG}).start()
    try:
        use_on_every_worker(server, cookie("cookie-abc"))
        use_on_every_worker(server, cookie("cookie-bob"))
        assert activity(database_url)["sess_abc123"] == (None, None)  # buffered, LONG not over
    finally:
        server.stop()  # SIGTERM
    stored = activity(database_url)
    assert stored["sess_abc123"][1] == "127.0.0.1" and stored["sess_bob1"][1] == "127.0.0.1"


def test_a_sigkill_loses_the_unwritten_batch_and_nothing_else(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, SEED, workers=2,
                        env={"SESSIONS_ACTIVITY_FLUSH_SECONDS": LONG}).start()
    try:
        status, headers, _ = server.request("POST", "/api/auth/login", body={"username": "alice", "password": "wonderland"})
        assert status == 200
        logged_in = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        assert server.request("DELETE", SESSIONS, ALICE, {"sessionId": "sess_def456"})[0] == 200
        use_on_every_worker(server, cookie("cookie-abc"))
    finally:
        server.kill()
    stored = activity(database_url)
    assert stored["sess_abc123"] == (None, None)  # the unwritten batch is lost
    assert "sess_def456" not in stored
    again = LiveServer(tmp_path, database_url, None, workers=1).start()
    try:
        assert again.request("GET", SESSIONS, cookie(logged_in))[0] == 200  # the login's session kept
        assert again.request("GET", SESSIONS, cookie("cookie-def"))[0] == 401  # the revocation too
        assert again.request("GET", SESSIONS, cookie("cookie-abc"))[0] == 200
    finally:
        again.stop()


def test_a_written_batch_survives_a_sigkill(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, SEED, workers=2,
                        env={"SESSIONS_ACTIVITY_FLUSH_SECONDS": "0.2"}).start()
    try:
        use_on_every_worker(server, cookie("cookie-abc"), times=4)
        deadline = time.monotonic() + 30
        while activity(database_url)["sess_abc123"] == (None, None):
            assert time.monotonic() < deadline, "the batch was never written"
            time.sleep(0.05)
    finally:
        server.kill()
    assert activity(database_url)["sess_abc123"][1] == "127.0.0.1"
