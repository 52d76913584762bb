"""Last activity: when, and from which address, each session was last used.

A use is a request that names the session by its cookie (the sessions routes, verify). It is
written at most once per SESSIONS_TOUCH_SECONDS per session: the request's own read already
says whether the session is due (auth/lookup.py's statements, `stale`), and only then is the use
noted, with the service's time of the request, in this worker's buffer (one entry per session,
the latest use). In a server worker a thread writes the buffer every
SESSIONS_ACTIVITY_FLUSH_SECONDS in one transaction, and once more when the worker stops
gracefully (`start_in_worker`); elsewhere (tests, `flask` commands) it is written as each
response closes. The writes go through a connection of their own that does not wait for the
disk (storage/database.py, ACTIVITY_CONNECTION_SETUP): an activity write is not a revocation, and it only
ever updates a session that still exists, so losing a batch (a SIGKILL) loses no session and
undoes no revocation.
"""

import ipaddress
import logging
import multiprocessing.util
import threading
from datetime import datetime, timedelta
from functools import lru_cache

from flask import Flask, after_this_request, current_app, request
from sqlalchemy import bindparam, or_, update

import models
from zipline_sessions.security.credentials import lower_thread_priority
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import ACTIVITY_CONNECTION_SETUP, db
from zipline_sessions.storage.reader import Reader
from zipline_sessions.storage.timestamps import InstantBound

logger = logging.getLogger("zipline_sessions.activity")
# SESSIONS_IP_MODE=truncate keeps the network, not the host: an IPv4 /24, an IPv6 /48.
TRUNCATED_PREFIX = {4: 24, 6: 48}
# The buffer holds at most this many sessions (a database refusing batches for long): the uses
# of further sessions are not noted meanwhile (each one's next use after that is).
MAX_PENDING = 100_000
# A graceful stop waits at most this long for the last batch.
FINAL_FLUSH_SECONDS = 10

_Session = models.Session
# Only a session that still exists, and never back in time (another worker may have written a
# newer use first). The request's read already said the session was due (the throttle).
_SEEN_AT = bindparam("seen_at", type_=InstantBound())
_TOUCH = (
    update(_Session)
    .where(_Session.c.id == bindparam("session_id"),
           or_(_Session.c.last_seen_at.is_(None), _Session.c.last_seen_at < _SEEN_AT))
    .values(last_seen_at=_SEEN_AT, ip=bindparam("address"),
            location=bindparam("location", type_=_Session.c.location.type))
)


class Activity:
    """What this app records and shows of sessions' use (app.extensions["activity"])."""

    def __init__(self, app: Flask):
        config = app.config
        seconds = config["TOUCH_SECONDS"]
        self.touch_every = timedelta(seconds=seconds) if seconds else None  # None: not recorded
        self.ip_mode = config["IP_MODE"]
        self.fields = config["ACTIVITY_FIELDS"]  # show lastSeenAt and ip in Session objects
        self.idle_after = models.idle_after(config)  # None: no idle timeout
        self.flush_every = config["ACTIVITY_FLUSH_SECONDS"]
        self.writer = Reader(db.engine, setup=ACTIVITY_CONNECTION_SETUP)
        self.pending: dict[str, tuple[datetime, str | None]] = {}  # session id: (seen at, address)
        self.lock = threading.Lock()
        self.flusher: Flusher | None = None  # a server worker's; None: written as each response closes
        self.locate = app.extensions["locate"]  # devices/location.py: where an address recorded is

    @property
    def recorded(self) -> bool:
        return self.touch_every is not None

    def address(self) -> str | None:
        """The request's client address as stored (ProxyFix's when proxies are trusted)."""
        return stored_address(request.remote_addr, self.ip_mode)

    def touch_later(self, session_id: str) -> None:
        """Note this request as the session's use, at the service's time of the request; written
        by the worker's next batch (or, outside a server worker, once the response has closed)."""
        use = (clock.utcnow(), self.address())
        with self.lock:
            if session_id in self.pending or len(self.pending) < MAX_PENDING:
                self.pending[session_id] = use
        if self.flusher is None:
            after_this_request(self._flush_on_close)

    def _flush_on_close(self, response):
        response.call_on_close(self.flush)
        return response

    def flush(self) -> int:
        """Write the buffered uses in one transaction; how many sessions it wrote (a session
        written meanwhile by another worker, or ended, is left as it is). On a busy or failing
        database the uses stay buffered for the next flush (a newer use of the same session wins)."""
        with self.lock:
            batch, self.pending = self.pending, {}
        if not batch:
            return 0
        # Located here, as the address is recorded: never per request (devices/location.py).
        params = [{"session_id": session_id, "seen_at": seen_at, "address": address,
                   "location": self.locate(address)} for session_id, (seen_at, address) in batch.items()]
        try:
            self.writer.execute_many(_TOUCH, params)
        except self.writer.engine.dialect.loaded_dbapi.Error as error:
            logger.debug("activity batch of %d kept for the next flush: %s", len(batch), error)
            with self.lock:
                for session_id, use in batch.items():
                    self.pending.setdefault(session_id, use)
            return 0
        return len(batch)


class Flusher(threading.Thread):
    """A server worker's activity writer: the buffer every SESSIONS_ACTIVITY_FLUSH_SECONDS, and
    once more on stop (a daemon thread: a worker that is killed does not wait for it)."""

    def __init__(self, activity: Activity):
        super().__init__(name="zipline-sessions-activity", daemon=True)
        self.activity = activity
        self.stopping = threading.Event()

    def run(self) -> None:
        # Below the request threads, as the hashing threads are: a batch shares the worker's CPU
        # with requests, and would otherwise add its length to the answers it overlaps.
        lower_thread_priority()
        while not self.stopping.wait(self.activity.flush_every):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        try:
            self.activity.flush()
        except Exception:  # anything unforeseen must not end activity in this worker
            logger.exception("activity flush failed; retrying")

    def stop(self) -> None:
        """Flush what is buffered and end the thread (the worker is stopping)."""
        self.stopping.set()
        self.join(FINAL_FLUSH_SECONDS)


def start_in_worker(app: Flask) -> Flask:
    """In a server worker, after the fork (serve.py gives it to Granian as the worker's app
    loader): batch this worker's activity writes in a thread, and flush them when the worker
    stops gracefully. Granian's worker is a multiprocessing process, whose exit runs
    multiprocessing's finalizers (not atexit): the last batch is written there.

    Not under test control: a fixture's reset must not meet a batch of the previous test's
    uses (seeds reuse session ids), so there each use is written as its response closes."""
    activity = app.extensions["activity"]
    if activity.recorded and activity.flusher is None and not app.config["TEST_CONTROL"]:
        activity.flusher = Flusher(activity)
        activity.flusher.start()
        multiprocessing.util.Finalize(None, activity.flusher.stop, exitpriority=10)
    return app


def init_activity(app: Flask) -> None:
    """Inside an app context (db.engine)."""
    app.extensions["activity"] = Activity(app)


def current() -> Activity:
    return current_app.extensions["activity"]


@lru_cache(maxsize=4096)  # a worker sees the same few addresses over and over
def stored_address(remote_addr: str | None, mode: str) -> str | None:
    """The address as SESSIONS_IP_MODE keeps it: full, truncated to its network, or not at all.
    Anything that is not an IP address (a Unix socket's peer) is not kept."""
    if mode == "off" or not remote_addr:
        return None
    try:
        address = ipaddress.ip_address(remote_addr.strip("[]"))
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if mode == "truncate":
        network = ipaddress.ip_network((address, TRUNCATED_PREFIX[address.version]), strict=False)
        return str(network.network_address)
    return str(address)[:45]  # a zone (%eth0) could make it longer than the column
