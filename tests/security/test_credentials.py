"""Password hashes: argon2id for new ones, older scrypt ones rehashed at login, hashing bounded."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import argon2
import pytest
from argon2.profiles import RFC_9106_LOW_MEMORY
from werkzeug.security import generate_password_hash

from models import User
from zipline_sessions.security import credentials
from zipline_sessions.storage.database import db, write_transaction

LOGIN = "/api/auth/login"


def stored_hash(app, username: str) -> str:
    with app.app_context():
        return db.session.query(User.password_hash).filter_by(username=username).scalar()


def test_new_password_hashes_are_argon2id_at_the_rfc_9106_low_memory_profile(app, runner):
    assert runner.invoke(args=["create-user", "gil", "--password", "hunter2-pass"]).exit_code == 0
    for username in ("alice", "gil"):  # seeded, and made by create-user
        password_hash = stored_hash(app, username)
        assert password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        assert argon2.extract_parameters(password_hash) == RFC_9106_LOW_MEMORY


def test_an_older_scrypt_hash_logs_in_and_is_replaced_by_argon2id(app, security_events):
    with app.app_context(), write_transaction():
        db.session.add(User(username="olga", password_hash=generate_password_hash("old-pass", method="scrypt")))
    client = app.test_client(use_cookies=False)
    assert client.post(LOGIN, json={"username": "olga", "password": "wrong"}).status_code == 401
    assert stored_hash(app, "olga").startswith("scrypt:")  # a failed login changes nothing

    assert client.post(LOGIN, json={"username": "olga", "password": "old-pass"}).status_code == 200
    rehashed = stored_hash(app, "olga")
    assert rehashed.startswith("$argon2id$")
    assert credentials.password_matches(rehashed, "old-pass")
    assert "password.rehashed" in [event["event"] for event in security_events]
    # The new hash serves the next login, and is kept.
    assert client.post(LOGIN, json={"username": "olga", "password": "old-pass"}).status_code == 200
    assert stored_hash(app, "olga") == rehashed


def test_a_hash_with_weaker_parameters_is_rehashed_at_login(app):
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("weak-pass")
    with app.app_context(), write_transaction():
        db.session.add(User(username="wes", password_hash=weak))
    client = app.test_client(use_cookies=False)
    assert client.post(LOGIN, json={"username": "wes", "password": "weak-pass"}).status_code == 200
    assert argon2.extract_parameters(stored_hash(app, "wes")) == RFC_9106_LOW_MEMORY


def test_a_current_hash_is_not_rewritten_at_login(app, client):
    before = stored_hash(app, "alice")
    assert client.post(LOGIN, json={"username": "alice", "password": "wonderland"}).status_code == 200
    assert stored_hash(app, "alice") == before


def test_hashes_run_on_bounded_threads_at_a_lower_priority(make_app):
    make_app(HASH_CONCURRENCY=2, HASH_QUEUE=3, HASH_QUEUE_WAIT=10)  # room for all five
    running, most, lock = [0], [0], threading.Lock()
    release = threading.Event()

    def probe():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(5)  # hold the slot while the others queue up
        with lock:
            running[0] -= 1
        thread = threading.get_native_id()
        return threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, thread)

    results = []
    callers = [threading.Thread(target=lambda: results.append(credentials._run_hashing(probe))) for _ in range(5)]
    for caller in callers:
        caller.start()
    threading.Timer(0.5, release.set).start()
    for caller in callers:
        caller.join(10)
    assert len(results) == 5 and most[0] <= 2
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for name, niceness in results:
        assert name.startswith("password-hash")
        assert niceness == min(19, own + credentials.HASH_THREAD_NICENESS)


def test_a_full_queue_refuses_at_once_and_a_late_start_gives_its_place_up(make_app):
    make_app(HASH_CONCURRENCY=1, HASH_QUEUE=1, HASH_QUEUE_WAIT=0.3)
    release, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(10)
        return "held"

    outcomes = []

    def call(function):
        try:
            outcomes.append(credentials._run_hashing(function))
        except credentials.HashingBusy as busy:
            outcomes.append(busy)

    holder = threading.Thread(target=call, args=(hold,))
    holder.start()
    assert started.wait(5)
    waiter = threading.Thread(target=call, args=(lambda: "never run",))
    waiter.start()  # the queue's one place: waits 0.3 s for the thread, then gives up
    time.sleep(0.1)
    refused = []
    try:
        credentials._run_hashing(lambda: "never run")
    except credentials.HashingBusy as busy:
        refused.append(busy)  # queue full: refused without waiting
    waiter.join(5)
    release.set()
    holder.join(5)
    assert len(refused) == 1 and refused[0].code == 503
    assert refused[0].get_response().headers["Retry-After"] == "1"
    assert "held" in outcomes and "never run" not in outcomes
    assert sum(isinstance(outcome, credentials.HashingBusy) for outcome in outcomes) == 1
    assert credentials._run_hashing(lambda: "free again") == "free again"


FORKED = """
import os, signal, sys
from zipline_sessions.security import credentials
credentials.set_hash_concurrency(2)
credentials.hash_password("before the fork")  # the pool now has a thread
child = os.fork()
if child == 0:
    signal.alarm(30)  # a pool waiting for threads it does not have would hang here
    os._exit(0 if credentials.password_matches(credentials.hash_password("pw"), "pw") else 1)
_, status = os.waitpid(child, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_worker_hashes_on_a_pool_of_its_own():
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", FORKED], cwd=root, capture_output=True, text=True,
                            timeout=90, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("profile", ["contract", "zipline-v4"])
def test_a_login_finding_the_hashing_queue_full_is_503_at_once(make_seeded_app, profile):
    app = make_seeded_app(HASH_CONCURRENCY=1, HASH_QUEUE=0, ERROR_PROFILE=profile)
    client = app.test_client(use_cookies=False)
    release, started = threading.Event(), threading.Event()

    def hold():
        started.set()
        release.wait(10)

    holder = threading.Thread(target=credentials._run_hashing, args=(hold,))
    holder.start()
    try:
        assert started.wait(5)
        response = client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"})
    finally:
        release.set()
        holder.join(10)
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    if profile == "contract":
        assert response.json == {"statusCode": 503, "error": "Service Unavailable",
                                 "message": "Too many logins at once, try again shortly."}
    else:
        assert response.json == {"error": "E6003: Too many logins at once, try again shortly.", "code": 6003,
                                 "statusCode": 503}
    assert client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"}).status_code == 200


def test_with_test_control_passwords_are_hashed_at_the_cheapest_parameters_and_rehashed_for_real(make_app):
    fixture = make_app(TEST_CONTROL=True)
    assert fixture.test_client().post("/__test__/reset", json={"users": [
        {"username": "tess", "password": "cheap-in-tests"}]}).status_code == 200
    cheap = stored_hash(fixture, "tess")
    assert cheap.startswith("$argon2id$v=19$m=8,t=1,p=1$")
    assert credentials.password_matches(cheap, "cheap-in-tests")
    assert not credentials.password_matches(cheap, "cheap-in-tests!")

    service = make_app()  # the same database, test control off: real parameters again
    client = service.test_client(use_cookies=False)
    assert client.post(LOGIN, json={"username": "tess", "password": "cheap-in-tests"}).status_code == 200
    assert argon2.extract_parameters(stored_hash(service, "tess")) == RFC_9106_LOW_MEMORY
