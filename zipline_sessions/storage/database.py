"""The SQLAlchemy handle, SQLite connection settings and write transactions."""

import math
import os
from contextlib import contextmanager, suppress

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase

from zipline_sessions.config.checks import ConfigError
from zipline_sessions.storage.watchdog import Watchdog, watch


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

# A write that must wait for another writer waits this long before failing (503); the
# setting SESSIONS_SQLITE_BUSY_TIMEOUT replaces it for the app's engine.
SQLITE_BUSY_TIMEOUT_MS = 5_000
# Activity writes (activity/last_seen.py) on their own connections: not worth a disk flush each (a power
# cut may lose the last few; never a revocation, which commits on the FULL connections), and
# not worth waiting for a busy database (skipped after this long; the next use tries again).
ACTIVITY_WAIT_MS = 50
# PostgreSQL: a pooled connection's ping as it is handed out waits at most this long (a ping
# takes well under a millisecond), then the pool opens a new connection instead.
PING_SECONDS = 2
ACTIVITY_CONNECTION_SETUP = {
    "sqlite": ("PRAGMA synchronous=NORMAL", f"PRAGMA busy_timeout={ACTIVITY_WAIT_MS}"),
    "postgresql": ("SET synchronous_commit TO off", f"SET lock_timeout = {ACTIVITY_WAIT_MS}"),
}


def engine_options(config) -> dict:
    """SQLAlchemy's engine options for the configured database: on PostgreSQL, libpq's bounds
    on a server that does not answer (README, "Configuration": SESSIONS_DATABASE_*)."""
    options = {"hide_parameters": True}  # errors are logged; their parameters (hashes) are not
    if make_url(config["SQLALCHEMY_DATABASE_URI"]).get_backend_name() == "postgresql":
        bound = config["DATABASE_TIMEOUT"]
        options["connect_args"] = {
            "connect_timeout": max(2, math.ceil(config["DATABASE_CONNECT_TIMEOUT"])),  # libpq's minimum is 2
            # A path that drops packets: unacknowledged data fails the socket after the bound,
            # and an idle connection is probed (keepalives) and found dead within about it.
            "tcp_user_timeout": int(bound * 1000),
            "keepalives": 1,
            "keepalives_idle": max(1, int(bound / 2)),
            "keepalives_interval": max(1, int(bound / 6)),
            "keepalives_count": 3,
            # A live server gives up on a statement (a lock wait included) after the bound.
            "options": f"-c statement_timeout={int(bound * 1000)}",
        }
    return options


def configure_engine(engine: Engine, config=None, durable: bool = True) -> None:
    """Apply the SQLite settings DESIGN.md asks for; on PostgreSQL, check each pooled connection
    as it is handed out and bound every statement (watchdog.py).

    `durable=False` (test control: a test's store, reset before each test): SQLite never waits
    for the disk (synchronous=OFF: a crash of the service loses nothing, one of the machine may
    lose or damage the store), so no reset pays for a checkpoint's flush (with NORMAL, one reset
    in about 50 did: 7-11 ms against a median of 3, bench/fixture.py).
    """
    if engine.dialect.name == "postgresql":
        bound_statements(engine, Watchdog(config["DATABASE_TIMEOUT"] if config else 10))
        return
    if engine.dialect.name != "sqlite":
        return
    busy_ms = int(config["SQLITE_BUSY_TIMEOUT"] * 1000) if config else SQLITE_BUSY_TIMEOUT_MS

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event below issue BEGIN itself, so that a
        # write transaction can take the write lock up front (BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching a new file to WAL waits on other starting workers.
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # An answered revocation must survive a power cut, not just a crash.
        cursor.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=OFF")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        write_lock = connection.get_execution_options().get("write_lock")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write_lock else "BEGIN")


def bound_statements(engine: Engine, watchdog: Watchdog) -> None:
    """Every statement, commit and rollback on `engine` armed with the watchdog's deadline, and
    each pooled connection pinged as it is handed out (a connection the server closed while it
    sat in the pool, say across a restart, is replaced there, never failing a request). The
    reader (reader.py) arms its own statements."""
    watch(engine, watchdog)  # the reader finds it there

    def dbapi_connection(connection):
        return connection.connection.dbapi_connection

    @event.listens_for(engine, "checkout")
    def ping(connection, _record, _proxy):
        watchdog.arm(connection, min(watchdog.seconds, PING_SECONDS))
        try:
            engine.dialect.do_ping(connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError(str(error)) from error  # the pool opens a new connection
        finally:
            watchdog.disarm(connection)

    @event.listens_for(engine, "before_cursor_execute")
    def arm(connection, *_args):
        if not connection.get_execution_options().get("unbounded"):  # migrations are not bounded
            watchdog.arm(dbapi_connection(connection))

    @event.listens_for(engine, "after_cursor_execute")
    def disarm(connection, *_args):
        watchdog.disarm(dbapi_connection(connection))

    @event.listens_for(engine, "commit")
    @event.listens_for(engine, "rollback")
    def arm_ending(connection):
        # A connection the server dropped mid-transaction is invalidated: its rollback reaches no
        # server and has no DB-API connection to arm (asking for one raises PendingRollbackError).
        if connection.invalidated or connection.closed:
            return
        if not connection.get_execution_options().get("unbounded"):
            watchdog.arm(dbapi_connection(connection))

    @event.listens_for(engine, "handle_error")
    def disarm_failed(context):
        with suppress(Exception):  # an invalidated connection has none left: its entry lapses
            watchdog.disarm(dbapi_connection(context.connection))

    @event.listens_for(engine, "checkin")
    def disarm_returned(connection, _record):
        if connection is not None:
            watchdog.disarm(connection)


def prepare_sqlite_file(url: URL) -> None:
    """A SQLite file database: make its missing folder, and a new file readable by its owner
    only (0600 whatever the umask; SQLite gives its -wal and -shm files the same mode).

    An existing file keeps the permissions it has: the operator who made it decided them.
    """
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"SESSIONS_DATABASE_URL: cannot make the folder {folder} of the SQLite database "
                          f"({error.strerror or error})") from None
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise ConfigError(f"SESSIONS_DATABASE_URL: cannot create the SQLite database {path} "
                          f"({error.strerror or error})") from None
    try:
        os.fchmod(descriptor, 0o600)  # a umask such as 0277 would have taken the owner's write bit
    finally:
        os.close(descriptor)


def check_database_opens(engine: Engine) -> None:
    """Connect once (on SQLite this reads the file's header); a ConfigError naming the database if not."""
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise ConfigError(f"SESSIONS_DATABASE_URL: cannot open the database "
                          f"{engine.url.render_as_string(hide_password=True)} ({reason})") from None
































@contextmanager
def write_transaction():
    """Run the block as one transaction that holds the write lock from its start.

    On SQLite, a deferred transaction that read first and writes later fails with
    "database is locked" when another writer got in between; BEGIN IMMEDIATE makes
    writers queue on busy_timeout instead. Reads made before are committed away so
    the block sees the latest committed state. On PostgreSQL the block serialises
    per user with SELECT ... FOR UPDATE where it needs to (see models.py).
    """
    db.session.commit()
    db.session.connection(execution_options={"write_lock": True})
    try:
        yield db.session
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise












