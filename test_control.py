"""The test-control API under /__test__/ (SESSIONS_TEST_CONTROL=true): reset, seed, the clock,
faults and the request journal, for loopback clients only.

create_app imports this module only when test control is on: otherwise its routes and hooks do
not exist and no request pays for them. Its state (clock, faults, journal) lives in the database
(models.ServiceClock, InjectedFault, JournalEntry), so every worker sees the same.
"""

import ipaddress
import json
import random
import time
from contextlib import contextmanager
from datetime import timedelta
from functools import lru_cache

from flask import Blueprint, Flask, Response, current_app, g, has_app_context, request
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import bindparam, delete, insert, select, update
from werkzeug.exceptions import BadRequest, Forbidden, HTTPException, Unauthorized

import credentials
import models
import seed
from auth import presented_credentials
from database import db, read_rows, write_transaction
from models import InjectedFault, JournalEntry, LoginAttempt, LoginSession, ServiceClock, SessionEvent, User
from ratelimit import login_username
from schemas import load_body, request_json
from timestamps import format_timestamp

PREFIX = "/__test__"
LOOPBACK_ONLY = "Test control answers loopback clients only"
INJECTED = "Injected fault"
MAX_DELAY_MS = 60_000
_UNREAD = object()  # g holds no clock reading yet

test_control = Blueprint("test_control", __name__, url_prefix=PREFIX)


def init_test_control(app: Flask) -> None:
    """Give `app` the /__test__/ routes, the test clock, faults and the journal."""
    app.extensions["test_control"] = True
    models.clock_hook = service_clock
    app.before_request(_note_user_and_apply_fault)
    app.after_request(_journal)
    app.register_blueprint(test_control)
    app.logger.warning("SESSIONS_TEST_CONTROL is on: loopback clients can reset the store, move the clock and "
                       "inject faults under %s/. Never use it in production.", PREFIX)


@test_control.before_request
def loopback_only():
    """403 for any client but this machine (behind trusted proxies: the client they name)."""
    if not _is_loopback(request.remote_addr):
        raise Forbidden(LOOPBACK_ONLY)


# ---- reset and seed


@test_control.post("/reset")
def reset():
    """Empty the store (users, sessions, login-limit counts, faults, journal), release the clock,
    then load the body as a seed document if there is one; all or nothing."""
    user_count, session_count = reset_store(_optional_body())
    return {"users": user_count, "sessions": session_count}


@test_control.post("/seed")
def add_seed():
    """Add a seed document, as `flask seed` would (all or nothing)."""
    document = request_json()
    with _seed_refusal():
        user_count, session_count = seed.store_seed(_parse_seed(document), _password_hashes)
    return {"users": user_count, "sessions": session_count}


def reset_store(document) -> tuple[int, int]:
    """One write transaction: delete every row (the events outbox too), release the clock, insert
    the seed (which emits no events)."""
    g.service_clock = None  # released: the seed's defaults and the rows are in real time
    with _seed_refusal():
        users = _parse_seed(document) if document is not None else []
        hashes = _password_hashes(seed.seed_passwords(users))
        with write_transaction():
            for model in (JournalEntry, InjectedFault, LoginAttempt, SessionEvent, LoginSession, User):
                db.session.execute(delete(model))
            db.session.execute(update(ServiceClock).values(fixed_at=None))
            return seed.insert_seed(users, hashes) if users else (0, 0)


def _parse_seed(document) -> list:
    config = current_app.config
    return seed.parse_seed(document, config["TTL_SECONDS"], models.utcnow(), max_per_user=config["MAX_PER_USER"])


@contextmanager
def _seed_refusal():
    """A refused seed document is a 400 naming the entry; its transaction changed nothing."""
    try:
        yield
    except seed.SeedError as error:
        raise BadRequest(f"Seed refused, nothing changed: {error}") from None


def _optional_body():
    """The JSON body, or None when the request has none."""
    return request_json() if request.get_data(cache=True) else None


def _password_hashes(passwords: list[str]) -> list[str]:
    """Seeded passwords' hashes, each kept for the next reset with the same seed (hashing is slow
    on purpose: ~0.1 s each). Test control only: the passwords stay in this process's memory."""
    return [_password_hash(password) for password in passwords]


@lru_cache(maxsize=4096)
def _password_hash(password: str) -> str:
    return credentials.hash_password(password)


# ---- the clock


class Seconds(fields.Float):
    """A JSON number (not "3", not true)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class ClockSchema(Schema):
    set = fields.String()
    advance = Seconds(allow_nan=False, validate=validate.Range(-100 * 365 * 86400, 100 * 365 * 86400))
    release = fields.Boolean(validate=validate.Equal(True))

    @validates_schema
    def exactly_one(self, data, **kwargs):
        if len(data) != 1:
            raise ValidationError('Give exactly one of "set" (an ISO 8601 date), "advance" (seconds) '
                                  'or "release": true.')
        if "set" in data and seed.parse_date(data["set"]) is None:
            raise ValidationError(f"{data['set']!r} is not an ISO 8601 date.", "set")


clock_schema = ClockSchema()


@test_control.get("/clock")
def read_clock():
    """The service's time now."""
    return {"now": format_timestamp(models.utcnow())}


@test_control.post("/clock")
def move_clock():
    """Set the clock to a date, move it by some seconds, or release it to real time; the clock
    stands still at what is set until moved or released."""
    body = load_body(clock_schema)
    with write_transaction():
        row = select(ServiceClock.fixed_at).where(ServiceClock.id == 1).with_for_update()
        fixed_at = db.session.execute(row).scalar_one()
        if "set" in body:
            fixed_at = seed.parse_date(body["set"])
        elif "advance" in body:
            if fixed_at is None:
                g.service_clock = None  # released: utcnow() is real time
                fixed_at = models.utcnow()
            fixed_at += timedelta(seconds=body["advance"])
            fixed_at = fixed_at.replace(microsecond=fixed_at.microsecond // 1000 * 1000)
        else:
            fixed_at = None
        db.session.execute(update(ServiceClock).values(fixed_at=fixed_at))
    g.service_clock = fixed_at
    return read_clock()


def service_clock():
    """models.clock_hook: the stored clock of a test-control app (read once per request), or
    None for real time."""
    if not has_app_context() or "test_control" not in current_app.extensions:
        return None  # another app in this process (tests build several)
    now = g.get("service_clock", _UNREAD)
    if now is _UNREAD:
        rows = read_rows(_CLOCK, {"clock_id": 1})
        now = g.service_clock = rows[0].fixed_at if rows else None
    return now


_CLOCK = select(ServiceClock.fixed_at).where(ServiceClock.id == bindparam("clock_id"))


# ---- faults


class FaultSchema(Schema):
    route = fields.String(required=True, validate=validate.Regexp(r"\A[A-Z]+ /\S*\Z", error="Must be a method and "
                                                                  "a path, such as 'GET /api/user/sessions'."))
    status = fields.Integer(strict=True, validate=validate.Range(400, 599))
    message = fields.String(validate=validate.Length(min=1, max=255))
    delayMs = fields.Integer(strict=True, validate=validate.Range(0, MAX_DELAY_MS))
    jitterMs = fields.Integer(strict=True, validate=validate.Range(0, MAX_DELAY_MS))
    drop = fields.Boolean(validate=validate.Equal(True))
    times = fields.Integer(strict=True, validate=validate.Range(min=1))

    @validates_schema
    def one_fault(self, data, **kwargs):
        if not {"status", "delayMs", "jitterMs", "drop"} & data.keys():
            raise ValidationError('Give "status", "delayMs" (and "jitterMs") or "drop": true.')
        if "status" in data and "drop" in data:
            raise ValidationError('A fault answers "status" or drops the connection, not both.')
        if "message" in data and "status" not in data:
            raise ValidationError('"message" goes with "status".', "message")
        if data["route"].partition(" ")[2].startswith(PREFIX + "/"):
            raise ValidationError("Test-control routes are never faulted.", "route")


fault_schema = FaultSchema()


@test_control.post("/faults")
def add_fault():
    """Make the next `times` requests to a route (all when absent) fail, wait or drop; replaces
    that route's fault. Answers every fault."""
    body = load_body(fault_schema)
    row = {"route": body["route"], "status": body.get("status"), "message": body.get("message"),
           "delay_ms": body.get("delayMs"), "jitter_ms": body.get("jitterMs"),
           "drop_connection": body.get("drop", False), "remaining": body.get("times")}
    with write_transaction():
        db.session.execute(delete(InjectedFault).where(InjectedFault.route == row["route"]))
        db.session.execute(insert(InjectedFault).values(row))
    return list_faults()


@test_control.get("/faults")
def list_faults():
    """The faults in force, with how many requests each still applies to (null: all)."""
    faults = db.session.execute(select(InjectedFault).order_by(InjectedFault.route)).scalars()
    return {"faults": [_fault_body(fault) for fault in faults]}


@test_control.delete("/faults")
def clear_faults():
    """Remove every fault."""
    with write_transaction():
        db.session.execute(delete(InjectedFault))
    return {"faults": []}


def _fault_body(fault: InjectedFault) -> dict:
    body = {"route": fault.route, "status": fault.status, "message": fault.message, "delayMs": fault.delay_ms,
            "jitterMs": fault.jitter_ms, "drop": fault.drop_connection or None}
    return {key: value for key, value in body.items() if value is not None} | {"times": fault.remaining}


_FAULT_COLUMNS = (InjectedFault.status, InjectedFault.message, InjectedFault.delay_ms, InjectedFault.jitter_ms,
                  InjectedFault.drop_connection, InjectedFault.remaining)
_FAULT = select(*_FAULT_COLUMNS).where(InjectedFault.route == bindparam("route"))
# One more request used of a counted fault: exact across workers (a row write under its lock).
_TAKE_ONE = (update(InjectedFault)
             .where(InjectedFault.route == bindparam("route_key"), InjectedFault.remaining > 0)
             .values(remaining=InjectedFault.remaining - 1)
             .returning(*_FAULT_COLUMNS))


class InjectedError(HTTPException):
    """A fault's status, answered in the configured error shape."""

    def __init__(self, status: int, message: str | None):
        super().__init__(message or INJECTED)
        self.code = status


class ConnectionDropped(Exception):
    """Raised inside a response body that declared a length: Granian then closes the connection
    without sending anything (the client sees an empty reply). Granian's log shows it with its
    traceback ("Application callable raised an exception"), and its access log a 200."""


def _apply_fault():
    """Before a request: the route's fault, if one is in force (a status raises, a drop answers
    a body that never comes, a delay sleeps); records what was applied for the journal."""
    route = _storable(f"{request.method} {request.path}")
    rows = read_rows(_FAULT, {"route": route})
    if not rows:
        return None
    fault = rows[0]
    if fault.remaining is not None:
        with write_transaction():
            fault = db.session.execute(_TAKE_ONE, {"route_key": route}).first()
            db.session.execute(delete(InjectedFault).where(InjectedFault.remaining == 0))
        if fault is None:
            return None  # used up by other requests meanwhile
    applied = g.applied_fault = {}
    if fault.delay_ms or fault.jitter_ms:
        wait = (fault.delay_ms or 0) + random.randint(0, fault.jitter_ms or 0)
        time.sleep(wait / 1000)
        applied["delayMs"] = wait
    if fault.drop_connection:
        applied["drop"] = True
        return _dropped_connection()
    if fault.status is not None:
        applied["status"] = fault.status
        raise InjectedError(fault.status, fault.message)
    return None


def _dropped_connection() -> Response:
    def never():
        raise ConnectionDropped("Injected fault: connection dropped (SESSIONS_TEST_CONTROL)")
        yield b""  # a generator: the exception comes once the server asks for the body

    response = Response(never(), status=200)
    response.headers["Content-Length"] = "1"
    return response


# ---- the journal


def _note_user_and_apply_fault():
    """Before every request but test control's own: remember who it names, then its fault."""
    if request.path.startswith(PREFIX + "/"):
        return None
    g.journal_user = _named_user()
    return _apply_fault()


def _named_user() -> str | None:
    """The user a request names: a login's username, else its token's or cookie's user (read
    before the request runs: a logout or revocation would remove it)."""
    if request.path == "/api/auth/login":
        return _storable(login_username())[:255] or None
    try:
        row = models.identity_of(*presented_credentials())
    except Unauthorized:  # neither token nor cookie
        return None
    return row.username if row is not None else None


def _journal(response):
    """After every request but test control's own: one journal row (no body, token or cookie)."""
    if request.path.startswith(PREFIX + "/"):
        return response
    fault = g.get("applied_fault")
    with write_transaction():
        db.session.execute(insert(JournalEntry).values(
            method=_storable(request.method)[:16], path=_storable(request.path)[:2048],
            status=None if fault and fault.get("drop") else response.status_code, at=models.utcnow(),
            username=g.get("journal_user"), fault=json.dumps(fault) if fault else None))
    return response


@test_control.get("/requests")
def journal():
    """The requests received since the last reset, oldest first."""
    entries = db.session.execute(select(JournalEntry).order_by(JournalEntry.id)).scalars()
    return {"requests": [{"method": entry.method, "path": entry.path, "status": entry.status,
                          "time": format_timestamp(entry.at), "user": entry.username,
                          "fault": json.loads(entry.fault) if entry.fault else None} for entry in entries]}


# ---- helpers


def _is_loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def _storable(text: str) -> str:
    """Text any database column holds: no NUL, no lone surrogate."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
