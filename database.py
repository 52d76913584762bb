"""The SQLAlchemy handle, SQLite connection settings and write transactions."""

import os
from collections import namedtuple
from contextlib import contextmanager, suppress
from functools import cache, lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import bindparam, event
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase

from settings import ConfigError


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# A write that must wait for another writer waits this long before failing.
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Activity writes (activity.py) on their own connections: not worth a disk flush each (a power
# cut may lose the last few; never a revocation, which commits on the FULL connections), and
# not worth waiting for a busy database (skipped after this long; the next use tries again).
ACTIVITY_WAIT_MS = 50
ACTIVITY_CONNECTION_SETUP = {
    "sqlite": ("PRAGMA synchronous=NORMAL", f"PRAGMA busy_timeout={ACTIVITY_WAIT_MS}"),
    "postgresql": ("SET synchronous_commit TO off", f"SET lock_timeout = {ACTIVITY_WAIT_MS}"),
}


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


def read_rows(statement, params: dict) -> list:
    """Run one prebuilt SELECT for the request path (see Reader); rows with named columns."""
    return current_app.extensions["reader"].rows(statement, params)


def read_tuples(statement, params: dict) -> list:
    """Run one prebuilt SELECT for the request path (see Reader); plain tuples, for a loop that
    reads the columns by position."""
    return current_app.extensions["reader"].tuples(statement, params)


class Reader:
    """The request path's statements: a stack of idle autocommit DBAPI connections, no pool.

    Each read is one statement, consistent on its own, and in autocommit it sees every commit
    made before it: a revocation is seen by the next request on every worker. A statement takes
    an idle connection (or opens one), runs and puts the connection back, which skips the pool's
    hand-out and its rollback on return (a round trip on PostgreSQL) and SQLAlchemy's
    per-execute work (README, "Benchmark"). There are never more connections than statements
    at once. The SQL is compiled by SQLAlchemy once per statement and dialect, with its types'
    own conversions. Engine.dispose() closes these connections too.
    """

    def __init__(self, engine: Engine, setup: dict | None = None):
        self.engine = engine
        # Statements each new connection runs first, by dialect (ACTIVITY_CONNECTION_SETUP).
        self.setup = (setup or {}).get(engine.dialect.name, ())
        self.idle: list = []  # (connection, cursor); list.pop and list.append are atomic
        self.generation = 0  # bumped by dispose: connections out at the time are closed on return
        event.listen(engine, "engine_disposed", self.close_all)

    def rows(self, statement, params: dict) -> list:
        """Run one prebuilt SELECT; its rows, as named tuples."""
        prepared = _prepared(statement, self.engine.dialect)
        return prepared.rows(self._run(prepared, params, _fetch_all))

    def tuples(self, statement, params: dict) -> list:
        """Run one prebuilt SELECT; its rows as plain tuples in the SELECT's column order."""
        prepared = _prepared(statement, self.engine.dialect)
        return prepared.tuples(self._run(prepared, params, _fetch_all))

    def execute(self, statement, params: dict) -> int:
        """Run one prebuilt write as its own transaction (autocommit); the rows it changed."""
        return self._run(_prepared(statement, self.engine.dialect), params, _row_count)

    def _run(self, prepared, params: dict, collect):
        arguments = prepared.arguments(params)
        for attempt in (1, 2):
            generation = self.generation
            try:
                connection, cursor = self.idle.pop()
            except IndexError:
                connection, cursor = self._connect()
            try:
                cursor.execute(prepared.sql, arguments)
                result = collect(cursor)
            except self.engine.dialect.loaded_dbapi.Error as error:
                disconnected = self.engine.dialect.is_disconnect(error, connection, cursor)
                _close_quietly(connection)
                if attempt == 2 or not disconnected:
                    raise
                continue
            if generation == self.generation:
                self.idle.append((connection, cursor))
            else:
                _close_quietly(connection)
            return result
        raise AssertionError("unreachable")

    def _connect(self) -> tuple:
        proxied = self.engine.raw_connection()  # through the pool once: its connect events run
        proxied.detach()
        connection = proxied.dbapi_connection
        self.engine.dialect.set_isolation_level(connection, "AUTOCOMMIT")
        cursor = connection.cursor()
        for sql in self.setup:
            cursor.execute(sql)
        return connection, cursor

    def close_all(self, _engine=None) -> None:
        self.generation += 1
        while self.idle:
            with suppress(IndexError):
                _close_quietly(self.idle.pop()[0])


def _fetch_all(cursor) -> list:
    return cursor.fetchall()


def _row_count(cursor) -> int:
    return cursor.rowcount


def _close_quietly(connection) -> None:
    if connection is not None:
        with suppress(Exception):  # already broken: nothing left to release
            connection.close()


class _Prepared:
    def __init__(self, statement, dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.order = compiled.positiontup or []
        # Bulk inserts repeat their values (seeded dates); a request's reads never do.
        convert = _memoized if statement.is_insert else _as_is
        self.binds = {name: convert(bind.type.dialect_impl(dialect).bind_processor(dialect))
                      for name, bind in compiled.binds.items()}
        # Positional drivers (SQLite): each placeholder's parameter and conversion, in order.
        self.slots = [(name, self.binds[name]) for name in self.order]
        columns = list(getattr(statement, "selected_columns", []))
        results = [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]
        # Only the columns whose type converts (a date stored as text, say) are touched.
        self.conversions = [(index, convert) for index, convert in enumerate(results) if convert]
        self.row_type = namedtuple("Row", [column.key for column in columns])

    def arguments(self, params: dict):
        if self.positional:
            return tuple([params[name] if convert is None else convert(params[name]) for name, convert in self.slots])
        return {name: (self.binds[name](value) if self.binds[name] else value) for name, value in params.items()}

    def rows(self, raws: list) -> list:
        make = self.row_type._make
        return [make(raw) for raw in self.tuples(raws)]

    def tuples(self, raws: list) -> list:
        if not self.conversions:
            return raws
        rows = []
        for raw in raws:
            values = list(raw)
            for index, convert in self.conversions:
                values[index] = convert(values[index])
            rows.append(tuple(values))
        return rows


_prepared_cache: dict = {}


def _memoized(processor):
    """A type's bind conversion, run once per distinct value (seeded rows repeat their dates)."""
    return None if processor is None else lru_cache(maxsize=4096)(processor)


def _as_is(processor):
    return processor


@contextmanager
def bulk_load_cache(megabytes: int = 512):
    """Inside a write transaction: let SQLite cache up to `megabytes` of pages while the block
    loads many rows (random token hashes touch every page of their index), then give it back."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    before = connection.exec_driver_sql("PRAGMA cache_size").scalar()
    connection.exec_driver_sql(f"PRAGMA cache_size=-{megabytes * 1024}")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size={before}")


def insert_many(table, rows: list[dict]) -> None:
    """Bulk INSERT into `table` inside the current write transaction, on the DBAPI cursor
    (PostgreSQL: COPY).

    For seeding a million rows: SQLAlchemy's executemany spends more time converting each
    row's parameters than the database spends storing it.
    """
    if not rows:
        return
    connection = db.session.connection()
    keys = tuple(sorted(rows[0]))
    if connection.dialect.name == "postgresql":
        _copy_rows(connection, table, keys, rows)  # 1.6-2.3x executemany's speed (README, "Benchmark")
        return
    if (table.name, keys) not in _bulk_inserts:
        _bulk_inserts[table.name, keys] = table.insert().values({key: bindparam(key) for key in keys})
    statement = _bulk_inserts[table.name, keys]
    prepared = _prepared(statement, connection.dialect)
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.executemany(prepared.sql, [prepared.arguments(row) for row in rows])
    finally:
        cursor.close()


_bulk_inserts: dict = {}


def _copy_rows(connection, table, keys: tuple, rows: list[dict]) -> None:
    """PostgreSQL: the rows through COPY, psycopg adapting each value."""
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        with cursor.copy(f"COPY {table.name} ({', '.join(keys)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[key] for key in keys])
    finally:
        cursor.close()


def _prepared(statement, dialect) -> _Prepared:
    key = (id(statement), dialect.name)
    if key not in _prepared_cache:
        _prepared_cache[key] = _Prepared(statement, dialect)
    return _prepared_cache[key]


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


def refresh_planner_statistics() -> None:
    """After a bulk load: give the query planner statistics of what is now in the tables.

    Without them PostgreSQL plans a user's session list as if the tables were empty (it ANDs
    the user's index with a bitmap of the whole expiry index: 2.6 ms instead of 0.1 ms per
    request at 100,000 sessions). SQLite samples a bounded number of rows per index.
    """
    with write_transaction() as session:
        connection = session.connection()
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA analysis_limit=1000")
            connection.exec_driver_sql("ANALYZE")
        elif connection.dialect.name == "postgresql":
            tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
            connection.exec_driver_sql(f"ANALYZE {tables}")


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
