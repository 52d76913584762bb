"""Crash durability: SIGKILL the server in a storm of logins and revocations, restart it on the
same SQLite file, and check that every answered request still holds."""

import http.client
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

import pytest
from conftest import sqlite_only
from live_server import LiveServer

SESSIONS = "/api/user/sessions"
SEEDED = 400
USERS = {"users": [{"username": "dora", "password": "pw", "token": "tok-dora",
                    "sessions": [{"id": f"sess_d{n}", "token": f"d-{n}"} for n in range(SEEDED)]}]}
# Room for all of dora's sessions: a login must not end any (SESSIONS_MAX_PER_USER); and for
# both logins in the hashing queue of one worker, however slow the machine (no 503 busy).
ROOM = {"SESSIONS_MAX_PER_USER": str(2 * SEEDED), "SESSIONS_HASH_QUEUE": "2", "SESSIONS_HASH_QUEUE_WAIT": "60"}


@sqlite_only
# Kill points: once this many revocations and logins have been answered (more are in flight).
@pytest.mark.parametrize(("after_revocations", "after_logins"), [(5, 1), (60, 3), (200, 8)],
                         ids=["early", "middle", "late"])
def test_answered_requests_survive_a_sigkill(tmp_path, database_url, after_revocations, after_logins):
    server = LiveServer(tmp_path, database_url, USERS, workers=3, env=ROOM).start()
    revoked, logged_in, lock, stop = [], [], threading.Lock(), threading.Event()

    def revoker(start):
        for n in range(start, SEEDED, 4):
            if stop.is_set():
                return
            try:
                status = server.request("DELETE", SESSIONS, {"Authorization": "tok-dora"},
                                        {"sessionId": f"sess_d{n}"})[0]
            except (OSError, http.client.HTTPException):
                return  # the server died under this request: its answer never came
            assert status == 200
            with lock:
                revoked.append(n)

    def loginer():
        while not stop.is_set():
            try:
                status, headers, _ = server.request("POST", "/api/auth/login", {},
                                                    {"username": "dora", "password": "pw"})
            except (OSError, http.client.HTTPException):
                return
            assert status == 200
            with lock:
                logged_in.append(headers["Set-Cookie"].split(";")[0])

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(revoker, start) for start in range(4)] + [pool.submit(loginer) for _ in range(2)]
        deadline = time.monotonic() + 60
        while (len(revoked) < after_revocations or len(logged_in) < after_logins) and time.monotonic() < deadline:
            time.sleep(0.005)
        server.kill()
        stop.set()
        for future in futures:
            future.result()
    assert revoked and logged_in, "the storm must have had answers before the kill"

    path = database_url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    restarted = LiveServer(tmp_path, database_url, None, workers=2, env=ROOM).start()
    try:
        for n in revoked:
            assert restarted.request("GET", SESSIONS, {"Cookie": f"zipline_token=d-{n}"})[0] == 401, n
        for session_cookie in logged_in:
            assert restarted.request("GET", SESSIONS, {"Cookie": session_cookie})[0] == 200
        listed = restarted.request("GET", SESSIONS, {"Authorization": "tok-dora"})[2]["other"]
        assert not {f"sess_d{n}" for n in revoked} & {session["id"] for session in listed}
    finally:
        restarted.stop()
