"""The database schema: Alembic migrations, run once at start or by `flask --app app db-upgrade`."""

from functools import cache
from pathlib import Path

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect
from sqlalchemy.exc import SQLAlchemyError

from zipline_sessions.storage.database import db

# Installed, migrations/ ships inside the package (zipline_sessions/_entry/, see command.py);
# in a checkout it is at the top of the repository.
_PACKAGE = Path(__file__).resolve().parents[1]
MIGRATIONS = next(path for path in (_PACKAGE / "_entry" / "migrations", _PACKAGE.parent / "migrations")
                  if path.is_dir())


def migrate(revision: str = "head", new_database_from: MetaData | None = None) -> None:
    """Bring the database to `revision` (the newest by default); safe when workers start at once.

    One transaction holding the write lock (SQLite) or an advisory lock (PostgreSQL):
    the first process migrates, the others then find nothing to do. With `new_database_from`
    (every table's definition; test control gives it), a database with no table at all is built
    in one step instead: create_all, then stamped at head (tests/storage/test_schema_in_one_step.py
    proves the result equal to the migrations').
    """
    with db.engine.connect().execution_options(write_lock=True) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7468201)")
        if new_database_from is not None and revision == "head" and not inspect(connection).get_table_names():
            new_database_from.create_all(connection)
            MigrationContext.configure(connection).stamp(_script_directory(), "head")
            return
        from alembic import command  # the migrations' path only: a new test database never needs it

        config = _alembic_config()
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
