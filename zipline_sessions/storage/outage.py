"""Which database errors mean "the database cannot serve right now" (down, restarting, silent,
locked past the busy wait, disk full): the request answers 503 (web/errors.py), not 500."""

import sqlite3

from sqlalchemy import exc

UNAVAILABLE = "Database unavailable, try again shortly."
# SQLite's primary result codes (an extended code's low byte) that are the database's state,
# not the request's fault: BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL, CANTOPEN, PROTOCOL.
SQLITE_UNAVAILABLE = frozenset((5, 6, 7, 8, 10, 13, 14, 15))
# PostgreSQL SQLSTATE classes and codes of the same kind: connection exceptions (08),
# insufficient resources (53: disk full, too many connections), operator intervention (57:
# shutdown, restart, statement_timeout's query_canceled), system errors (58), lock_not_available.
POSTGRES_CLASSES = ("08", "53", "57", "58")
POSTGRES_CODES = frozenset(("55P03",))


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` (SQLAlchemy's, or a DBAPI driver's raised by storage/reader.py) says the
    database is unreachable or cannot take the statement now."""
    if isinstance(error, exc.DBAPIError) and error.connection_invalidated:
        return True
    if isinstance(error, (exc.DisconnectionError, exc.TimeoutError)):
        return True  # no live connection could be had, or the pool's wait ran out
    original = getattr(error, "orig", None) or error
    if isinstance(original, sqlite3.Error):
        code = getattr(original, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in SQLITE_UNAVAILABLE
    if type(original).__module__.partition(".")[0] == "psycopg":
        return _postgres_unavailable(original)
    return False


def _postgres_unavailable(error: BaseException) -> bool:
    import psycopg  # only ever reached with psycopg loaded

    state = getattr(error, "sqlstate", None)
    if state is None:
        # Raised by the client itself: no connection, a connection lost or cut, a closed one.
        return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))
    return state[:2] in POSTGRES_CLASSES or state in POSTGRES_CODES


def describe(error: BaseException) -> str:
    """The first line of the driver's message, for the log (never the statement's parameters)."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return f"{type(original).__name__}: {text[0] if text else ''}"
