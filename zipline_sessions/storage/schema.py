"""The database schema: Alembic migrations, run once at start or by `flask --app app db-upgrade`.

Alembic itself is imported only to run migrations: a start on a current database, or on a new
test database built in one step, reads and writes the version table directly, as Alembic does.
"""

import ast
from functools import cache
from pathlib import Path

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from zipline_sessions.storage.database import db

# Installed, migrations/ ships inside the package (zipline_sessions/_entry/, see command.py);
# in a checkout it is at the top of the repository.
_PACKAGE = Path(__file__).resolve().parents[1]
MIGRATIONS = next(path for path in (_PACKAGE / "_entry" / "migrations", _PACKAGE.parent / "migrations")
                  if path.is_dir())
# Alembic's version table, as its MigrationContext defines it.
VERSION_TABLE = Table("alembic_version", MetaData(), Column("version_num", String(32), nullable=False),
                      PrimaryKeyConstraint("version_num", name="alembic_version_pkc"))


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
        if revision == "head" and _current_revisions(connection) == newest_revisions():
            return  # nothing to do: no need for Alembic
        if new_database_from is not None and revision == "head" and not inspect(connection).get_table_names():
            new_database_from.create_all(connection)
            VERSION_TABLE.create(connection)
            connection.execute(VERSION_TABLE.insert(), [{"version_num": head} for head in sorted(newest_revisions())])
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
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
        return _current_revisions(connection) == newest_revisions()


def _current_revisions(connection) -> frozenset[str]:
    if not inspect(connection).has_table(VERSION_TABLE.name):
        return frozenset()
    return frozenset(connection.execute(select(VERSION_TABLE.c.version_num)).scalars())


@cache
def newest_revisions() -> frozenset[str]:
    """The head revisions of migrations/: read from the files' `revision` and `down_revision`,
    without importing Alembic (tests/storage/test_schema_in_one_step.py holds it to Alembic's own)."""
    revisions, parents = set(), set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(
                node, "target", None)
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(target, ast.Name) and node.value:
                if target.id == "revision":
                    revisions.add(ast.literal_eval(node.value))
                elif target.id == "down_revision":
                    value = ast.literal_eval(node.value)
                    parents.update(value if isinstance(value, tuple | list) else [value] if value else [])
    return frozenset(revisions - parents)
