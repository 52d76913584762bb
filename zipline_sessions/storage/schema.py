"""The database schema: Alembic migrations, run once at start or by `flask --app app db-upgrade`."""

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from zipline_sessions.storage.database import db

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def migrate(revision: str = "head") -> None:
    """Bring the database to `revision` (the newest by default); safe when workers start at once.

    One transaction holding the write lock (SQLite) or an advisory lock (PostgreSQL):
    the first process migrates, the others then find nothing to do.
    """
    config = _alembic_config()
    # A migration of a large table may take longer than SESSIONS_DATABASE_TIMEOUT: unbounded.
    with db.engine.connect().execution_options(write_lock=True, unbounded=True) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
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
