"""Every secret the service makes, and how each is kept at rest."""

import hashlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.security import check_password_hash

# 32 random bytes = 256 bits, as DESIGN.md requires for tokens.
TOKEN_BYTES = 32
SESSION_ID_PREFIX = "sess_"

# argon2id at RFC 9106's low-memory profile (t=3, 64 MiB, 4 lanes): OWASP's first choice,
# and what Zipline's own server uses. A stored hash made with other parameters, or an older
# werkzeug scrypt hash ("scrypt:..."), is rehashed at the user's next successful login.
PASSWORD_HASHER = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
# Test control only (never in production): argon2id at its cheapest parameters (t=1, 8 KiB, one
# lane; microseconds), as Django's test settings use a fast hasher, so that a seed's passwords
# and each login cost no hashing time. A hash made so is rehashed at a login on a real service.
TEST_PASSWORD_HASHER = PasswordHasher.from_parameters(replace(profiles.CHEAPEST, salt_len=16, hash_len=32))
# How much nicer (lower priority) than the request threads the hashing thread runs, so that
# a hash in progress does not take the CPU from other requests (Linux; its lanes inherit it).
HASH_THREAD_NICENESS = 10

# A login that cannot start hashing soon answers 503 with this Retry-After (seconds).
HASHING_RETRY_AFTER = 1
HASHING_BUSY = "Too many logins at once, try again shortly."

_hashing: ThreadPoolExecutor | None = None
_hashing_threads = 0
_hashing_lock = threading.Lock()
# The bounded queue: hashes running or waiting (threads + queue); how long one may wait to start.
_slots = threading.BoundedSemaphore(2)
_queue = 1
_queue_wait = 0.5


class HashingBusy(ServiceUnavailable):
    """Every hashing thread is busy and the queue is full, or a waiting hash did not start in time."""

    def __init__(self):
        super().__init__(HASHING_BUSY, retry_after=HASHING_RETRY_AFTER)


def new_token() -> str:
    """A fresh API or session token (shown once, never stored)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_session_id() -> str:
    """A fresh public session id; it names a session and is never a credential."""
    return SESSION_ID_PREFIX + secrets.token_urlsafe(12)


def hash_token(token: str) -> str:
    """What is stored for a token: its SHA-256, hex (the token itself is high-entropy)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def set_hash_concurrency(threads: int, queue: int | None = None, wait: float | None = None) -> None:
    """How many password hashes this process computes at once (each takes 64 MiB); how many more
    may wait for a thread (`queue`), each at most `wait` seconds; any beyond: HashingBusy."""
    global _hashing, _hashing_threads, _slots, _queue, _queue_wait
    with _hashing_lock:
        _queue = _queue if queue is None else queue
        _queue_wait = _queue_wait if wait is None else wait
        _slots = threading.BoundedSemaphore(threads + _queue)
        if threads == _hashing_threads:
            return
        previous = _hashing
        _hashing = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="password-hash",
                                      initializer=lower_thread_priority)
        _hashing_threads = threads
    if previous is not None:
        previous.shutdown(wait=False)


def _fresh_pool_after_fork() -> None:
    # A forked worker inherits the pool but not its threads (a server that makes the app before
    # it forks): the pool would wait forever for them. Start the child with a pool of its own.
    global _hashing, _hashing_threads, _hashing_lock
    threads = _hashing_threads
    _hashing, _hashing_threads, _hashing_lock = None, 0, threading.Lock()
    if threads:
        set_hash_concurrency(threads)


os.register_at_fork(after_in_child=_fresh_pool_after_fork)


def lower_thread_priority() -> None:
    """Run the calling thread HASH_THREAD_NICENESS nice levels below the request threads (the
    hashing threads, and the activity writer's: background work that must not take the CPU from
    requests). Linux only; elsewhere, or when not allowed, nothing changes."""
    try:
        thread = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, nice + HASH_THREAD_NICENESS))
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the usual priority
        pass


def refuse_when_busy() -> None:
    """HashingBusy now when every hashing place (threads and queue) is taken: a login that
    could not be hashed is refused before it costs anything else (its count, its lookup)."""
    if _hashing is not None and _slots._value == 0:  # a glance, not a reservation: _run_hashing decides
        raise HashingBusy()


def _run_hashing(function, *args):
    """Every password hash and check goes through here: at most the set number at once, and
    a bounded queue behind them. A caller that finds the queue full is refused at once
    (HashingBusy: 503 with Retry-After), holding its request thread no longer; one that waits
    longer than the set wait without its hash starting is refused then."""
    if _hashing is None:
        set_hash_concurrency(1)
    slots = _slots
    if not slots.acquire(blocking=False):
        raise HashingBusy()
    try:
        future = _hashing.submit(function, *args)
        try:
            return future.result(timeout=_queue_wait)
        except TimeoutError:
            if future.cancel():  # still waiting for a thread: give its place up
                raise HashingBusy() from None
            return future.result()  # started: a hash runs for well under a second
    finally:
        slots.release()


def hash_password(password: str) -> str:
    """A slow, salted argon2id hash of a password."""
    return _run_hashing(PASSWORD_HASHER.hash, password)


def hash_passwords(passwords: list[str]) -> list[str]:
    """hash_password for many (a seed file), through the same bounded threads."""
    if _hashing is None:
        set_hash_concurrency(1)
    return list(_hashing.map(PASSWORD_HASHER.hash, passwords))


def use_test_hasher(test_control: bool) -> None:
    """Hash with TEST_PASSWORD_HASHER when test control is on, else the real parameters."""
    global PASSWORD_HASHER
    hasher = TEST_PASSWORD_HASHER if test_control else PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
    if hasher.time_cost != PASSWORD_HASHER.time_cost or hasher.memory_cost != PASSWORD_HASHER.memory_cost:
        PASSWORD_HASHER = hasher
        _dummy_hash.cache_clear()


def warm_up() -> None:
    """Make the dummy hash now, so that no login pays for it."""
    _dummy_hash()


@cache
def _dummy_hash() -> str:
    # Checked when a login names no user, or one without a password: the same parameters as a
    # real hash, so an unknown user and a wrong password take the same time as well.
    return hash_password(secrets.token_urlsafe(16))


def password_matches(password_hash: str | None, password: str) -> bool:
    """Check a password; costs the same whether or not there is a hash to check."""
    if password_hash is None:
        _run_hashing(_verify, _dummy_hash(), password)
        return False
    return _run_hashing(_verify, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    """Whether a hash that just matched should be replaced by a new argon2id one."""
    if not password_hash.startswith("$argon2"):
        return True  # werkzeug scrypt (or pbkdf2) from earlier versions
    return PASSWORD_HASHER.check_needs_rehash(password_hash)


def _verify(password_hash: str, password: str) -> bool:
    if password_hash.startswith("$argon2"):
        try:
            return PASSWORD_HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
    return check_password_hash(password_hash, password)
