"""Last activity: when, and from which address, each session was last used.

A use is a request that names the session by its cookie (the sessions routes, verify). It is
written at most once per SESSIONS_TOUCH_SECONDS per session: the request's own read already
says whether the session is due (auth/lookup.py's statements, `stale`), and only then is one small
UPDATE run, after the response has been sent, on a connection of the thread's own that does not
wait for the disk (database.ACTIVITY_CONNECTION_SETUP). An activity write is not a revocation:
one lost to a power cut costs a minute of "last seen", and a busy database skips it.
"""

import ipaddress
import logging
from datetime import timedelta
from functools import partial

from flask import Flask, after_this_request, current_app, request
from sqlalchemy import bindparam, or_, update

import models
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import ACTIVITY_CONNECTION_SETUP, db
from zipline_sessions.storage.reader import Reader

logger = logging.getLogger("zipline_sessions.activity")
# SESSIONS_IP_MODE=truncate keeps the network, not the host: an IPv4 /24, an IPv6 /48.
TRUNCATED_PREFIX = {4: 24, 6: 48}

_Session = models.Session
_TOUCH = (
    update(_Session)
    .where(_Session.c.id == bindparam("session_id"),
           or_(_Session.c.last_seen_at.is_(None), _Session.c.last_seen_at < bindparam("stale_before")))
    .values(last_seen_at=bindparam("seen_at"), ip=bindparam("address"),
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
        self.writer = Reader(db.engine, setup=ACTIVITY_CONNECTION_SETUP)
        self.locate = app.extensions["locate"]  # devices/location.py: where an address recorded is

    @property
    def recorded(self) -> bool:
        return self.touch_every is not None

    def address(self) -> str | None:
        """The request's client address as stored (ProxyFix's when proxies are trusted)."""
        return stored_address(request.remote_addr, self.ip_mode)

    def touch_later(self, session_id: str) -> None:
        """Record this request as the session's use, once its response has been sent."""
        touch = partial(self.touch, session_id, self.address())

        def after_response(response):
            response.call_on_close(touch)
            return response

        after_this_request(after_response)

    def touch(self, session_id: str, address: str | None) -> bool:
        """The activity write: at most one per TOUCH_SECONDS per session, whichever worker
        comes first; skipped (False) when the database is busy or fails."""
        now = clock.utcnow()
        params = {"session_id": session_id, "stale_before": now - self.touch_every, "seen_at": now,
                  "address": address, "location": self.locate(address)}
        try:
            return self.writer.execute(_TOUCH, params) == 1
        except self.writer.engine.dialect.loaded_dbapi.Error as error:
            logger.debug("activity write skipped: %s", error)
            return False


def init_activity(app: Flask) -> None:
    """Inside an app context (db.engine)."""
    app.extensions["activity"] = Activity(app)


def current() -> Activity:
    return current_app.extensions["activity"]


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
