"""The database schema: Alembic migrations, run once at start or by `flask --app app db-upgrade`,
and the gate that answers 503 while the database is behind the code (README, "Upgrades").

Alembic itself is imported only to run migrations: a start on a current database, or on a new
test database built in one step, reads and writes the version table directly, as Alembic does.
"""

import ast
import threading
import time
from dataclasses import dataclass
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
UPGRADE_COMMAND = "flask --app app db-upgrade"
BEHIND_MESSAGE = f"Database schema is not up to date: run {UPGRADE_COMMAND}"
# While the schema is behind, one request in this many seconds looks again (the others answer
# 503 at once): an upgrade is noticed within this long, and a flood costs no query per request.
RECHECK_SECONDS = 2.0


@dataclass(frozen=True)
class Migration:
    """What migrate() did: the revision before and after (None: an empty database) and the
    revisions it ran, oldest first."""

    before: str | None
    after: str | None
    ran: tuple[str, ...]
    ahead: bool = False  # the database is at a revision this release does not know: nothing done
    built: bool = False  # a new test database built at the newest revision in one step

    def describe(self) -> str:
        if self.ahead:
            return (f"Database schema is at {self.before}, which this release does not know (a newer "
                    "release migrated it): nothing done.")
        if self.built:
            return f"Built a new database at {self.after} in one step (test control)."
        if not self.ran:
            return f"Database schema is at {self.after} (the newest): nothing to do."
        start = "an empty database" if self.before is None else self.before
        return f"Upgraded the database schema from {start} to {self.after} (ran {', '.join(self.ran)})."


def migrate(revision: str = "head", new_database_from: MetaData | None = None) -> Migration:
    """Bring the database to `revision` (the newest by default); safe when workers start at once.

    One transaction holding the write lock (SQLite) or an advisory lock (PostgreSQL):
    the first process migrates, the others then find nothing to do. With `new_database_from`
    (every table's definition; test control gives it), a database with no table at all is built
    in one step instead: create_all, then stamped at head (tests/storage/test_schema_in_one_step.py
    proves the result equal to the migrations').
    """
    # A migration of a large table may take longer than SESSIONS_DATABASE_TIMEOUT: unbounded.
    with db.engine.connect().execution_options(write_lock=True, unbounded=True) as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7468201)")
        before = _revision(connection)
        if before is not None and before not in known_revisions():
            return Migration(before, before, (), ahead=True)
        if revision == "head" and before is not None and {before} == newest_revisions():
            return Migration(before, before, ())  # nothing to do: no need for Alembic
        if new_database_from is not None and revision == "head" and not inspect(connection).get_table_names():
            new_database_from.create_all(connection)
            VERSION_TABLE.create(connection)
            connection.execute(VERSION_TABLE.insert(), [{"version_num": head} for head in sorted(newest_revisions())])
            return Migration(None, _revision(connection), (), built=True)
        from alembic import command

        config = _alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = _revision(connection)
    ran = [] if before == after else [script.revision for script in
                                      _script_directory().iterate_revisions(after, before or "base")]
    return Migration(before, after, tuple(reversed(ran)))


def schema_state() -> str:
    """"current", "behind" (older than the code, or empty: `db-upgrade` brings it up), or "ahead"
    (a revision this code does not know: a newer release migrated it). An unreachable database raises."""
    with db.engine.connect() as connection:
        current = _revision(connection)
    if current is not None and current not in known_revisions():
        return "ahead"
    return "current" if current is not None and {current} == newest_revisions() else "behind"


def schema_problem() -> str | None:
    """Why the database cannot serve (unreachable, or its schema behind the code), or None."""
    try:
        state = schema_state()
    except SQLAlchemyError:
        return "Database unavailable"
    return BEHIND_MESSAGE if state == "behind" else None


def schema_is_current() -> bool:
    """Whether the database is at the newest migration (an unreachable database raises)."""
    return schema_state() == "current"


class SchemaGate:
    """Open once the schema is not behind the code. Made at start (one query); while closed, at
    most one thread per RECHECK_SECONDS looks again, and no thread waits for it."""

    def __init__(self, behind: bool):
        self.behind = behind
        self._checked_at = time.monotonic()
        self._checking = threading.Lock()

    def still_behind(self) -> bool:
        if not self.behind:
            return False
        now = time.monotonic()
        if now - self._checked_at >= RECHECK_SECONDS and self._checking.acquire(blocking=False):
            try:
                self._checked_at = now
                self.behind = schema_state() == "behind"
            except SQLAlchemyError:
                pass  # unreachable: still closed; the next look is RECHECK_SECONDS away
            finally:
                self._checking.release()
        return self.behind


def _revision(connection) -> str | None:
    """The database's revision (one head, as this project's migrations have), or None: none yet."""
    if not inspect(connection).has_table(VERSION_TABLE.name):
        return None
    return connection.execute(select(VERSION_TABLE.c.version_num)).scalars().first()


@cache
def _revision_graph() -> tuple[frozenset[str], frozenset[str]]:
    """Every revision of migrations/ and the newest ones, read from the files' `revision` and
    `down_revision` without importing Alembic (tests/storage/test_schema_in_one_step.py holds it
    to Alembic's own)."""
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
    return frozenset(revisions), frozenset(revisions - parents)


def known_revisions() -> frozenset[str]:
    return _revision_graph()[0]


def newest_revisions() -> frozenset[str]:
    return _revision_graph()[1]


@cache
def _script_directory():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config())


def _alembic_config():
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
