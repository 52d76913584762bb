"""Bounded waits on a sick database: a PostgreSQL that never answers (at the start, or after
it), a SQLite file locked by another process past the busy wait, a SQLite disk that fills up.
Each ends in a 503 in the contract's shape (or a one-line refusal to start), never a 500 or a
hang, and the service recovers by itself."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import BACKEND, SEED, assert_error, cookie, run_once, sqlite_only
from live_server import ROOT, LiveServer, free_port
from own_servers import OwnPostgres, postgres_bin

from zipline_sessions.storage.database import db

SESSIONS = "/api/user/sessions"
LOGIN = "/api/auth/login"
UNAVAILABLE = "Database unavailable, try again shortly."
ALICE = {"Authorization": "tok-alice"}


class SilentProxy:
    """A TCP proxy on a free loopback port in front of `target`; silence() makes it keep every
    connection open and accept new ones, and never pass a byte again (a server that hangs, or a
    path that drops packets, as a client sees it); speak() makes it pass bytes again."""

    def __init__(self, target_port: int | None):
        self.target_port = target_port
        self.silent = threading.Event()
        if target_port is None:
            self.silent.set()  # nothing behind it: silent from the start
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(client)
            if self.silent.is_set():
                continue  # accepted, never answered
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.held.append(upstream)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pass, args=(source, sink), daemon=True).start()

    def _pass(self, source, sink) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            while self.silent.is_set():
                time.sleep(0.05)  # hold it: the peer waits for an answer that never comes
            if not data:
                return
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for held in self.held:
            held.close()


@run_once
def test_a_database_that_accepts_and_never_answers_stops_the_start_with_one_line(tmp_path):
    silent = SilentProxy(None)
    env = {**os.environ, "SESSIONS_DATABASE_URL": f"postgresql+psycopg://nobody@127.0.0.1:{silent.port}/db",
           "SESSIONS_DATABASE_CONNECT_TIMEOUT": "3", "SESSIONS_BIND": f"127.0.0.1:{free_port()}"}
    try:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "serve.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=30, check=False)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("zipline-sessions: SESSIONS_DATABASE_URL: cannot open the database "
                               f"postgresql+psycopg://nobody@127.0.0.1:{silent.port}/db")
    print(f"\nrefused to start after {took:.1f} s (connect timeout 3 s)")


@run_once
@pytest.mark.skipif(postgres_bin("initdb") is None, reason="no PostgreSQL installation (initdb) on this machine")
def test_a_database_that_goes_silent_after_the_start_gets_503_within_the_bound(tmp_path):
    postgres = OwnPostgres().start()
    proxy = SilentProxy(postgres.port)
    url = postgres.url.replace(f":{postgres.port}/", f":{proxy.port}/")
    env = {"SESSIONS_DATABASE_TIMEOUT": "2", "SESSIONS_DATABASE_CONNECT_TIMEOUT": "2", "SESSIONS_ACCESS_LOG": "off"}
    try:
        server = LiveServer(tmp_path, url, SEED, workers=1, env=env).start()
        try:
            for _ in range(3):  # the reader's and the pool's connections are open and in use
                assert server.request("GET", SESSIONS, ALICE)[0] == 200
                assert server.request("POST", LOGIN, {}, {"username": "alice", "password": "wonderland"})[0] == 200
            proxy.silent.set()
            took = {}
            for name, call in (("GET", ("GET", SESSIONS, ALICE)), ("verify", ("GET", "/api/auth/verify", ALICE)),
                               ("login", ("POST", LOGIN, {}, {"username": "alice", "password": "wonderland"})),
                               ("revoke", ("DELETE", SESSIONS, ALICE, {"all": True})),
                               ("health", ("GET", "/api/health", {}))):
                started = time.monotonic()
                status, _, body = server.request(*call, timeout=60)
                took[name] = time.monotonic() - started
                assert status == 503, (name, body)
                assert body["statusCode"] == 503 and body["error"] == "Service Unavailable"
            print("\nsilent after the start, bound 2 s, connect 2 s:",
                  ", ".join(f"{name} {seconds:.2f} s" for name, seconds in took.items()))
            proxy.silent.clear()  # it answers again: the service recovers by itself
            deadline = time.monotonic() + 30
            while server.request("GET", SESSIONS, ALICE)[0] != 200:
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert server.request("POST", LOGIN, {}, {"username": "alice", "password": "wonderland"})[0] == 200
            assert server.request("GET", "/api/health")[0] == 200
        finally:
            server.stop()
    finally:
        proxy.close()
        postgres.remove()


HOLD_LOCK = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # until the test closes our stdin
connection.execute("ROLLBACK")
"""


@sqlite_only
def test_a_sqlite_file_locked_past_the_busy_wait_answers_503(make_seeded_app):
    app = make_seeded_app(SQLITE_BUSY_TIMEOUT=0.5)
    client = app.test_client(use_cookies=False)
    with app.app_context():
        path = db.engine.url.database
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        response = client.delete(SESSIONS, headers=cookie("cookie-abc"), json={"sessionId": "sess_def456"})
        assert_error(response, 503, "Service Unavailable", UNAVAILABLE)
        assert response.headers["Retry-After"] == "1"
        response = client.post(LOGIN, json={"username": "alice", "password": "wonderland"})
        assert_error(response, 503, "Service Unavailable", UNAVAILABLE)
        # Reads do not wait on a writer (WAL).
        assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 200
    finally:
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()
    response = client.delete(SESSIONS, headers=cookie("cookie-abc"), json={"sessionId": "sess_def456"})
    assert response.status_code == 200 and response.json["other"] == []


@sqlite_only
def test_the_busy_wait_is_five_seconds_by_default(app):
    with app.app_context(), db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs mounted for the test (root only), unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(folder) -> str:
    """Fill the disk: a file that takes every free block."""
    path = os.path.join(folder, "filler")
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 512, 1):
            try:
                while True:
                    os.write(descriptor, b"\0" * size)
            except OSError:
                pass  # no room for that much: on with smaller pieces
    finally:
        os.close(descriptor)
    return path


@sqlite_only
def test_a_full_disk_refuses_writes_with_503_keeps_reads_and_recovers(small_disk, make_app):
    import sqlite3

    from zipline_sessions.fixture import seed_file, seeding
    from zipline_sessions.storage.clock import utcnow

    app = make_app(DATABASE_URL=f"sqlite:///{small_disk / 'sessions.db'}", TOUCH_SECONDS=0)
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], utcnow()))
    client = app.test_client(use_cookies=False)
    logged_in = [client.post(LOGIN, json={"username": "alice", "password": "wonderland"}).headers["Set-Cookie"]]
    # The write-ahead log emptied into the file, so that the next write must grow it.
    with sqlite3.connect(small_disk / "sessions.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    filler = fill(small_disk)
    for _ in range(3):
        response = client.post(LOGIN, json={"username": "alice", "password": "wonderland"})
        assert_error(response, 503, "Service Unavailable", UNAVAILABLE)
        response = client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
        assert_error(response, 503, "Service Unavailable", UNAVAILABLE)
        listed = client.get(SESSIONS, headers=ALICE)
        assert listed.status_code == 200 and len(listed.json["other"]) == 3  # reads keep working
        assert client.get(SESSIONS, headers={"Cookie": logged_in[0].split(";")[0]}).status_code == 200
    os.remove(filler)  # space again: the next write succeeds, no restart
    response = client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_def456"})
    assert response.status_code == 200
    logged_in.append(client.post(LOGIN, json={"username": "alice", "password": "wonderland"}).headers["Set-Cookie"])
    with app.app_context():
        db.engine.dispose()
    reopened = make_app(DATABASE_URL=f"sqlite:///{small_disk / 'sessions.db'}").test_client(use_cookies=False)
    for answered in logged_in:  # nothing answered 2xx is lost
        assert reopened.get(SESSIONS, headers={"Cookie": answered.split(";")[0]}).status_code == 200
    assert "sess_def456" not in {session["id"] for session in reopened.get(SESSIONS, headers=ALICE).json["other"]}


def test_which_errors_are_the_database_being_unavailable():
    import sqlite3

    from zipline_sessions.storage.outage import database_unavailable

    def sqlite_error(sql: str, connection=None) -> sqlite3.Error:
        try:
            (connection or sqlite3.connect(":memory:")).execute(sql)
        except sqlite3.Error as error:
            return error
        raise AssertionError(sql)

    assert not database_unavailable(sqlite_error("SELECT missing FROM nowhere"))  # the code's fault: 500
    assert not database_unavailable(sqlite_error("SELEC 1"))
    assert not database_unavailable(ValueError("not a database error"))
    readonly = sqlite3.connect("file::memory:?mode=ro", uri=True)
    assert database_unavailable(sqlite_error("CREATE TABLE t (x)", readonly))  # SQLITE_READONLY
    readonly.close()


@pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL only (the server ends a connection)")
def test_a_connection_the_server_ends_inside_a_write_is_the_database_being_unavailable(app):
    """A restart ends each open connection mid-transaction: the write fails as the database being
    unavailable (503), never as a rollback error on the dead connection (a 500), and the next one
    runs on a new connection."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    from zipline_sessions.storage.database import write_transaction
    from zipline_sessions.storage.outage import database_unavailable

    with app.app_context():
        other = create_engine(db.engine.url)
        try:
            with pytest.raises(OperationalError) as failed, write_transaction():
                pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
                with other.connect() as connection:
                    connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                db.session.execute(text("SELECT 1"))
            assert database_unavailable(failed.value)
            with write_transaction():
                assert db.session.execute(text("SELECT pg_backend_pid()")).scalar() != pid
        finally:
            other.dispose()
