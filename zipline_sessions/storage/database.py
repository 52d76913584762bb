"""The SQLAlchemy handle, SQLite connection settings and write transactions."""

import os
from contextlib import contextmanager

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase

from zipline_sessions.config.checks import ConfigError


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)

# A write that must wait for another writer waits this long before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Activity writes (activity/last_seen.py) on their own connections: not worth a disk flush each (a power
# cut may lose the last few; never a revocation, which commits on the FULL connections), and
# not worth waiting for a busy database (skipped after this long; the next use tries again).
ACTIVITY_WAIT_MS = 50
ACTIVITY_CONNECTION_SETUP = {
    "sqlite": ("PRAGMA synchronous=NORMAL", f"PRAGMA busy_timeout={ACTIVITY_WAIT_MS}"),
    "postgresql": ("SET synchronous_commit TO off", f"SET lock_timeout = {ACTIVITY_WAIT_MS}"),
}


def configure_engine(engine: Engine, durable: bool = True) -> None:
    """Apply the SQLite settings DESIGN.md asks for; other databases need nothing.

    `durable=False` (test control: a test's store, reset before each test): commits are not
    synced to disk (WAL with synchronous=NORMAL: a power cut may lose the last commits, never
    corrupts the file), so a reset does not wait for the disk.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # Let SQLAlchemy's "begin" event below issue BEGIN itself, so that a
        # write transaction can take the write lock up front (BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching a new file to WAL waits on other starting workers.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # An answered revocation must survive a power cut, not just a crash.
        cursor.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        write_lock = connection.get_execution_options().get("write_lock")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write_lock else "BEGIN")


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












