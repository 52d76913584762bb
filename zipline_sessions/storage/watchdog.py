"""A client-side bound on a PostgreSQL server that stops answering.

libpq has a connect timeout but no bound on a statement's round trip: a server that accepts
and then never answers (or a path that drops its packets) holds the request thread until the
operating system gives up, which can be many minutes. Every statement on a PostgreSQL
connection is therefore armed here with a deadline (SESSIONS_DATABASE_TIMEOUT); one daemon
thread per process checks a few times a second and shuts the socket of a connection past its
deadline. The blocked call then fails at once ("server closed the connection"), SQLAlchemy
invalidates the pool, and the request answers 503. A live server aborts a slow statement
itself first: its statement_timeout is set to the same bound (storage/database.py).
"""

import os
import socket
import threading
import time
import weakref
from contextlib import suppress

# How often the thread looks: the bound is the setting plus at most this.
TICK_SECONDS = 0.25


class Watchdog:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed: dict = {}  # id(DBAPI connection) -> (deadline, DBAPI connection)
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        _watchdogs.add(self)

    def arm(self, connection, seconds: float | None = None) -> None:
        """`connection` (a DBAPI connection) is about to wait on the server, at most `seconds`
        (the watchdog's bound by default)."""
        if self.thread is None:
            self._start()
        self.armed[id(connection)] = (time.monotonic() + (seconds or self.seconds), connection)

    def disarm(self, connection) -> bool:
        """`connection` got its answer (or its error); False when it was cut for being late."""
        with self.lock:  # the thread never cuts a connection once disarm has returned
            return self.armed.pop(id(connection), None) is not None

    def _start(self) -> None:
        with self.lock:
            if self.thread is None:
                self.thread = threading.Thread(target=self._watch, name="database-watchdog", daemon=True)
                self.thread.start()

    def _after_fork(self) -> None:
        # A forked worker has none of its parent's threads or statements, and the lock may have
        # been held at the fork.
        self.armed, self.lock, self.thread = {}, threading.Lock(), None

    def _watch(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            now = time.monotonic()
            with self.lock:
                for key, (deadline, connection) in list(self.armed.items()):
                    if deadline <= now:
                        del self.armed[key]
                        cut(connection)


_watchdogs: "weakref.WeakSet[Watchdog]" = weakref.WeakSet()
# The watchdog of each PostgreSQL engine (database.bound_statements); SQLite's have none.
_of_engine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def watch(engine, watchdog: Watchdog) -> None:
    _of_engine[engine] = watchdog


def watchdog_of(engine) -> Watchdog | None:
    return _of_engine.get(engine)


def _after_fork_in_child() -> None:
    for watchdog in list(_watchdogs):
        watchdog._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def cut(connection) -> None:
    """Shut the socket under a DBAPI connection: a call blocked on it returns at once."""
    descriptor = None
    with suppress(Exception):  # already closed (the driver's own error): nothing waits on it
        descriptor = connection.fileno()
    if descriptor is None:
        return
    try:
        with socket.socket(fileno=os.dup(descriptor)) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
