"""The database or Redis restarts under load: while it is down every request answers 503 in the
contract's shape, soon, never 500 nor a hang; once it is back every request succeeds again,
without restarting the service; no change answered 2xx is lost. Each test runs a server of its
own (tests/own_servers.py), never the machine's shared ones."""

import http.client
import threading
import time

import pytest
from conftest import run_once
from live_server import LiveServer
from own_servers import OwnPostgres, OwnRedis, postgres_bin

SESSIONS = "/api/user/sessions"
LOGIN = "/api/auth/login"
SEEDED = 300
SEED = {"users": [{"username": "pat", "password": "pw-pat-long", "token": "tok-pat",
                   "sessions": [{"id": f"sess_p{n}", "token": f"p-{n}"} for n in range(SEEDED)]}]}
# Limits on and counted (the login's own write), high enough never to refuse this test.
ENV = {"SESSIONS_LOGIN_RATE_LIMIT": "10000 per minute", "SESSIONS_LOGIN_ADDRESS_RATE_LIMIT": "10000 per minute",
       "SESSIONS_MAX_PER_USER": "10000", "SESSIONS_HASH_QUEUE": "4", "SESSIONS_HASH_QUEUE_WAIT": "30",
       "SESSIONS_ACCESS_LOG": "off"}
# A request that has no answer after this long is a hang, and fails the test.
HANG_SECONDS = 20
DOWN_SECONDS = 5


class Load:
    """Clients sending GETs, logins and revocations (and health checks) until stopped; every
    answer kept as (kind, started, took, status, body, extra)."""

    def __init__(self, server: LiveServer):
        self.server, self.answers, self.lock, self.stopping = server, [], threading.Lock(), threading.Event()
        self.next_revocation = iter(range(SEEDED))
        self.threads = [threading.Thread(target=self._loop, args=(kind,), daemon=True)
                        for kind in ("get", "get", "verify", "login", "revoke", "revoke", "health")]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(HANG_SECONDS + 5)

    def _loop(self, kind: str) -> None:
        while not self.stopping.is_set():
            extra = None
            if kind == "get":
                call = ("GET", SESSIONS, {"Authorization": "tok-pat"}, None)
            elif kind == "verify":
                call = ("GET", "/api/auth/verify", {"Authorization": "tok-pat"}, None)
            elif kind == "health":
                call = ("GET", "/api/health", {}, None)
            elif kind == "login":
                call = ("POST", LOGIN, {}, {"username": "pat", "password": "pw-pat-long"})
            else:
                with self.lock:
                    extra = next(self.next_revocation, None)
                if extra is None:
                    return
                call = ("DELETE", SESSIONS, {"Authorization": "tok-pat"}, {"sessionId": f"sess_p{extra}"})
            started = time.monotonic()
            try:
                status, headers, body = self.server.request(*call, timeout=HANG_SECONDS)
            except (OSError, http.client.HTTPException) as error:
                status, headers, body = None, {}, repr(error)
            if kind == "login" and status == 200:
                extra = headers["Set-Cookie"].split(";")[0]
            with self.lock:
                self.answers.append((kind, started, time.monotonic() - started, status, body, extra))
            time.sleep(0.02 if kind != "health" else 0.2)

    def between(self, start: float, end: float) -> list:
        with self.lock:
            return [answer for answer in self.answers if start <= answer[1] < end]


def assert_unavailable(answer, message=None) -> None:
    status, body = answer[3], answer[4]
    assert status == 503, answer
    assert set(body) == {"statusCode", "error", "message"} and body["statusCode"] == 503, answer
    assert body["error"] == "Service Unavailable", answer
    if message is not None:
        assert body["message"] == message, answer


def assert_nothing_answered_is_lost(server: LiveServer, answers: list) -> int:
    """Every revocation answered 200 is gone, every login answered 200 opens its session."""
    checked = 0
    for kind, _, _, status, _, extra in answers:
        if status == 200 and kind == "revoke":
            assert server.request("GET", SESSIONS, {"Cookie": f"zipline_token=p-{extra}"})[0] == 401, extra
            checked += 1
        elif status == 200 and kind == "login":
            assert server.request("GET", SESSIONS, {"Cookie": extra})[0] == 200, extra
            checked += 1
    return checked


def report(name: str, load: Load, down_at: float, up_at: float) -> None:
    during = load.between(down_at, up_at)
    after = [answer for answer in load.between(up_at, float("inf")) if answer[3] != 200]
    recovered = max((answer[1] + answer[2] for answer in after), default=up_at) - up_at
    print(f"\n{name}: {len(during)} requests while down, {sum(a[3] != 200 for a in during)} failed (503), "
          f"longest answer {max((a[2] for a in during), default=0):.3f} s; "
          f"{len(after)} failed after it answered again, the last ending {recovered:.2f} s after")


@run_once
@pytest.mark.skipif(postgres_bin("initdb") is None, reason="no PostgreSQL installation (initdb) on this machine")
def test_a_postgresql_restart_under_load(tmp_path):
    postgres = OwnPostgres().start()
    try:
        server = LiveServer(tmp_path, postgres.url, SEED, workers=2, env=ENV).start()
        workers = server.worker_pids()
        try:
            with Load(server) as load:
                time.sleep(2)
                postgres.stop("fast")
                down_at = time.monotonic()
                time.sleep(DOWN_SECONDS)
                up_at = time.monotonic()  # just before the start: it may answer before pg_ctl returns
                postgres.start()
                answering_at = time.monotonic()
                time.sleep(5 + 3)
            answers = load.answers
            assert all(answer[3] in (200, 503) for answer in answers), [a for a in answers if a[3] not in (200, 503)]
            for answer in answers:
                if answer[3] == 503:
                    assert_unavailable(answer)
            # pg_ctl stop returned: every request started before the start answers 503.
            during = load.between(down_at, up_at)
            assert {answer[0] for answer in during} == {"get", "verify", "login", "revoke", "health"}
            for answer in during:
                assert_unavailable(answer)
            # Within 5 s of PostgreSQL answering again, everything succeeds: the same processes.
            assert all(answer[3] == 200 for answer in load.between(answering_at + 5, float("inf")))
            assert len(load.between(answering_at + 5, float("inf"))) > 20
            assert server.process.poll() is None and server.worker_pids() == workers
            checked = assert_nothing_answered_is_lost(server, answers)
            assert checked > 10
            report("PostgreSQL down 5 s", load, down_at, up_at)
            print(f"writes answered 200 and checked afterwards: {checked}, lost: 0")
        finally:
            server.stop()
    finally:
        postgres.remove()


def test_a_redis_restart_under_load(tmp_path, database_url):
    redis = OwnRedis().start()
    try:
        env = {**ENV, "SESSIONS_RATELIMIT_STORAGE_URL": redis.url}
        server = LiveServer(tmp_path, database_url, SEED, workers=2, env=env).start()
        try:
            with Load(server) as load:
                time.sleep(2)
                redis.stop()
                down_at = time.monotonic()
                time.sleep(DOWN_SECONDS)
                up_at = time.monotonic()
                redis.start()
                answering_at = time.monotonic()
                time.sleep(5 + 3)
            answers = load.answers
            assert all(answer[3] in (200, 503) for answer in answers)
            for kind, *rest in load.between(down_at, up_at):
                answer = (kind, *rest)
                if kind in ("login", "health"):  # the login limit fails closed; the rest goes on
                    assert_unavailable(answer, "Login limit storage unavailable")
                else:
                    assert answer[3] == 200, answer
            assert all(answer[3] == 200 for answer in load.between(answering_at + 5, float("inf")))
            assert_nothing_answered_is_lost(server, answers)
            report("Redis down 5 s", load, down_at, up_at)
        finally:
            server.stop()
    finally:
        redis.stop()
