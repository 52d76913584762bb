"""The SQLAlchemy handle, SQLite connection settings and write transactions."""

from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# A write that must wait for another writer waits this long before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000


def configure_engine(engine: Engine) -> None:
    """Apply the SQLite settings DESIGN.md asks for; other databases need nothing."""
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
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        immediate = connection.get_execution_options().get("write_lock", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


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


def migrate(revision: str = "head") -> None:
    """Bring the database to `revision` (the newest by default); safe when workers start at once.

    One transaction holding the write lock (SQLite) or an advisory lock (PostgreSQL):
    the first process migrates, the others then find nothing to do.
    """
    config = _alembic_config()
    with db.engine.connect().execution_options(write_lock=True) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7468201)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def schema_problem() -> str | None:
    """Why the database cannot serve (unreachable, or its schema behind the code), or None."""
    try:
        current = schema_is_current()
    except SQLAlchemyError:
        return "Database unavailable"
    return None if current else "Database schema is not up to date: run flask --app app db-upgrade"


def schema_is_current() -> bool:
    """Whether the database is at the newest migration (an unreachable database raises)."""
    with db.engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    return set(current) == set(_script_directory().get_heads())


@cache
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
