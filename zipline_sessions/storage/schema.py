"""The database schema: Alembic migrations, run once at start or by `flask --app app db-upgrade`,
and the gate that answers 503 while the database is behind the code (README, "Upgrades")."""

import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from zipline_sessions.storage.database import db

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
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

    def describe(self) -> str:
        if self.ahead:
            return (f"Database schema is at {self.before}, which this release does not know (a newer "
                    "release migrated it): nothing done.")
        if not self.ran:
            return f"Database schema is at {self.after} (the newest): nothing to do."
        start = "an empty database" if self.before is None else self.before
        return f"Upgraded the database schema from {start} to {self.after} (ran {', '.join(self.ran)})."


def migrate(revision: str = "head") -> Migration:
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
        before = _revision(connection)
        if before is not None and _unknown(before):
            return Migration(before, before, (), ahead=True)
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
    if current is not None and _unknown(current):
        return "ahead"
    return "current" if current in _script_directory().get_heads() else "behind"


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
    heads = MigrationContext.configure(connection).get_current_heads()
    return heads[0] if heads else None


def _unknown(revision: str) -> bool:
    try:
        return _script_directory().get_revision(revision) is None
    except CommandError:  # alembic's ResolutionError
        return True


@cache
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def _alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config
