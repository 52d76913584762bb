"""Delivery of the outbox's session events to SESSIONS_WEBHOOK_URL (README, "Activity and events").

A delivery thread in each server worker (`start_in_workers`) POSTs the due events, signed, at
least once, in order per user, retrying with exponential backoff and jitter, until the receiver
answers 2xx or SESSIONS_WEBHOOK_MAX_AGE has passed (then the event is dead: /api/health and
`flask --app app events --failed` show it, `--retry` requeues it).
"""

import hashlib
import hmac
import logging
import os
import random
import socket
import threading
import time
from datetime import timedelta
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from urllib.parse import urlsplit

from flask import Flask, current_app
from sqlalchemy import delete, or_, select, update

from zipline_sessions.activity.events import SessionEvent
from zipline_sessions.storage import clock, outage
from zipline_sessions.storage.database import db, write_transaction

logger = logging.getLogger("zipline_sessions.events")

SIGNATURE_HEADER = "X-Zipline-Sessions-Signature"
EVENT_ID_HEADER = "X-Zipline-Sessions-Event-Id"
# One connect or read waits at most this long; the whole POST at most SESSIONS_WEBHOOK_DEADLINE.
# A worker claims up to BATCH events at once, leased for longer than BATCH deadlines (60 s with
# the default 5 s), so a claimed event is never delivered twice by two live workers, and a killed
# worker's batch is delivered by the others after that.
TIMEOUT_SECONDS = 5
BATCH = 8
LEASE_MARGIN_SECONDS = 20
MAX_ANSWER_BYTES = 64 * 1024  # of a receiver's answer body read; the rest is never held in memory
RETRY_CAP_SECONDS = 600  # the backoff doubles from SESSIONS_WEBHOOK_RETRY_BASE up to this
POLL_SECONDS = 0.5  # an idle delivery thread looks for due events this often (one indexed read)

_Events = SessionEvent.__table__


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def lease(deadline: float) -> timedelta:
    """How long a claimed batch is held: longer than its BATCH deliveries can take."""
    return timedelta(seconds=BATCH * deadline + LEASE_MARGIN_SECONDS)


class _Watchdog:
    """Cuts a connection at its deadline: shutting the socket down wakes a read blocked in
    another thread, so a receiver that answers one byte at a time cannot hold the delivery
    thread (a per-read timeout alone never fires while bytes keep coming)."""

    def __init__(self, connection: HTTPConnection, seconds: float):
        self.connection, self.expired = connection, False
        self.timer = threading.Timer(seconds, self.cut)
        self.timer.daemon = True

    def cut(self) -> None:
        self.expired = True
        sock = self.connection.sock
        if sock is not None:
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the TCP socket, under any TLS
            except OSError:
                pass


def post(url: str, secret: str, event_id: str, body: bytes, deadline: float = TIMEOUT_SECONDS) -> str | None:
    """POST one event within `deadline` seconds in all; None when the receiver took it (2xx),
    else why not. Redirects are not followed (a 3xx is a failure) and no proxy is used."""
    headers = {"Content-Type": "application/json", "User-Agent": "zipline-sessions",
               EVENT_ID_HEADER: event_id, SIGNATURE_HEADER: signature(secret, int(time.time()), body)}
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = HTTPSConnection if parts.scheme == "https" else HTTPConnection
    try:
        connection = connection_class(parts.hostname, parts.port, timeout=min(TIMEOUT_SECONDS, deadline))
    except ValueError as error:  # a port that is not a number
        return f"invalid URL: {error}"[:255]
    watchdog = _Watchdog(connection, deadline)
    watchdog.timer.start()
    try:
        connection.connect()
        if watchdog.expired:  # the deadline passed while connecting: the socket came too late to cut
            raise TimeoutError
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(MAX_ANSWER_BYTES)  # the status decides; a body beyond this is not waited for
        if watchdog.expired:
            raise TimeoutError
        return None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except (OSError, HTTPException) as error:
        if watchdog.expired:
            return f"no complete answer within the {deadline:g} s deadline"
        return f"{type(error).__name__}: {error}"[:255]
    finally:
        watchdog.timer.cancel()
        connection.close()


def backoff_seconds(attempts: int, base: float) -> float:
    """The wait after the `attempts`-th failure: base x 2^(attempts-1), capped, times a random
    factor in [0.5, 1) so that workers and events do not retry in step."""
    return min(RETRY_CAP_SECONDS, base * 2 ** min(attempts - 1, 30)) * random.uniform(0.5, 1.0)


def _claim(limit: int) -> list:
    """Lease up to `limit` due events: each user's oldest owed event, unless another worker
    holds it, it waits for its retry, or an earlier event of that user is still owed."""
    now = clock.utcnow()
    candidate, earlier = _Events.alias("candidate"), _Events.alias("earlier")
    owed_before = (select(earlier.c.id).where(earlier.c.user_id == candidate.c.user_id,
                                              earlier.c.id < candidate.c.id, earlier.c.dead_at.is_(None))
                   .exists())
    due = (select(candidate.c.id)
           .where(candidate.c.dead_at.is_(None), candidate.c.next_attempt_at <= now,
                  or_(candidate.c.lease_until.is_(None), candidate.c.lease_until <= now), ~owed_before)
           .order_by(candidate.c.id).limit(limit)
           .with_for_update(skip_locked=True, of=candidate))  # PostgreSQL; SQLite holds the write lock
    claim = (update(_Events).where(_Events.c.id.in_(due.scalar_subquery()))
             .values(lease_until=now + lease(current_app.config["WEBHOOK_DEADLINE"]), attempts=_Events.c.attempts + 1)
             .returning(_Events.c.id, _Events.c.event_id, _Events.c.payload, _Events.c.attempts,
                        _Events.c.queued_at))
    with write_transaction():
        return sorted(db.session.execute(claim).all(), key=lambda row: row.id)


def _anything_due() -> bool:
    now = clock.utcnow()
    query = select(_Events.c.id).where(_Events.c.dead_at.is_(None), _Events.c.next_attempt_at <= now,
                                       or_(_Events.c.lease_until.is_(None), _Events.c.lease_until <= now)).limit(1)
    found = db.session.execute(query).first() is not None
    db.session.commit()  # end the read: SQLite would otherwise hold its snapshot
    return found


def deliver_due() -> int:
    """Inside an app context: deliver what is due now, one batch; how many were claimed."""
    if not _anything_due():
        return 0
    config = current_app.config
    claimed = _claim(BATCH)
    for event in claimed:
        error = post(config["WEBHOOK_URL"], config["WEBHOOK_SECRET"], event.event_id, event.payload.encode(),
                     config["WEBHOOK_DEADLINE"])
        with write_transaction():
            if error is None:
                db.session.execute(delete(_Events).where(_Events.c.id == event.id))
            else:
                _failed(event, error, config)
    return len(claimed)


def _failed(event, error: str, config) -> None:
    now = clock.utcnow()
    values = {"lease_until": None, "last_error": error[:255]}
    if now - event.queued_at >= timedelta(seconds=config["WEBHOOK_MAX_AGE"]):
        values["dead_at"] = now
        logger.warning("event %s dead after %d attempts: %s", event.event_id, event.attempts, error)
    else:
        values["next_attempt_at"] = now + timedelta(seconds=backoff_seconds(event.attempts,
                                                                            config["WEBHOOK_RETRY_BASE"]))
    db.session.execute(update(_Events).where(_Events.c.id == event.id).values(values))


class DeliveryThread(threading.Thread):
    """One per server worker: delivers due events until the process ends (a daemon thread, so
    SIGTERM's shutdown never waits for it; an event it held is delivered again after its
    lease, which is why delivery is at least once)."""

    def __init__(self, app: Flask):
        super().__init__(name="zipline-sessions-events", daemon=True)
        self.app = app
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            gate = self.app.extensions.get("schema_gate")  # web/schema_gate.py: closed while behind
            try:
                with self.app.app_context():
                    claimed = 0 if gate is not None and gate.still_behind() else deliver_due()
            except Exception as error:  # a database hiccup must not end delivery in this worker
                if outage.database_unavailable(error):  # one line, not a traceback twice a second
                    logger.warning("event delivery waits for the database: %s", outage.describe(error))
                else:
                    logger.exception("event delivery failed; retrying")
                claimed = 0
            if not claimed:
                self.stopping.wait(POLL_SECONDS)


def start_in_workers(app: Flask) -> None:
    """Start a delivery thread in each process forked from this one (serve.py's workers), never
    in this one: a thread does not survive a fork, and the master serves no requests."""
    if app.config["WEBHOOK_URL"]:
        os.register_at_fork(after_in_child=lambda: DeliveryThread(app).start())
