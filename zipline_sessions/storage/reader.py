"""The request path's reads: prebuilt statements run on a stack of idle autocommit connections."""

from collections import namedtuple
from contextlib import suppress
from functools import lru_cache

from flask import current_app
from sqlalchemy import event
from sqlalchemy.engine import Engine

from zipline_sessions.storage.watchdog import watchdog_of


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
        self.watchdog = watchdog_of(engine)  # PostgreSQL: a bound on each statement's round trip
        event.listen(engine, "engine_disposed", self.close_all)

    def rows(self, statement, params: dict) -> list:
        """Run one prebuilt SELECT; its rows, as named tuples."""
        prepared = prepared_statement(statement, self.engine.dialect)
        return prepared.rows(self._run(prepared, params, _fetch_all))

    def tuples(self, statement, params: dict) -> list:
        """Run one prebuilt SELECT; its rows as plain tuples in the SELECT's column order."""
        prepared = prepared_statement(statement, self.engine.dialect)
        return prepared.tuples(self._run(prepared, params, _fetch_all))

    def execute(self, statement, params: dict) -> int:
        """Run one prebuilt write as its own transaction (autocommit); the rows it changed."""
        return self._run(prepared_statement(statement, self.engine.dialect), params, _row_count)

    def execute_many(self, statement, params_list: list) -> None:
        """Run one prebuilt write once per parameter set, all in one transaction (SQLite: BEGIN
        IMMEDIATE, so a busy database fails at once after its busy timeout, before any work).
        On any error none of it is kept (the connection is closed, which rolls it back)."""
        prepared = prepared_statement(statement, self.engine.dialect)
        arguments = [prepared.arguments(params) for params in params_list]
        generation = self.generation
        try:
            connection, cursor = self.idle.pop()
        except IndexError:
            connection, cursor = self._connect()
        try:
            cursor.execute("BEGIN IMMEDIATE" if self.engine.dialect.name == "sqlite" else "BEGIN")
            cursor.executemany(prepared.sql, arguments)
            cursor.execute("COMMIT")
        except BaseException:
            _close_quietly(connection)
            raise
        self._put_back(generation, connection, cursor)

    def _put_back(self, generation: int, connection, cursor) -> None:
        if generation == self.generation:
            self.idle.append((connection, cursor))
        else:
            _close_quietly(connection)

    def _run(self, prepared, params: dict, collect):
        arguments = prepared.arguments(params)
        for attempt in (1, 2):
            generation = self.generation
            try:
                connection, cursor = self.idle.pop()
            except IndexError:
                connection, cursor = self._connect()
            watchdog = self.watchdog
            if watchdog is not None:
                watchdog.arm(connection)
            try:
                cursor.execute(prepared.sql, arguments)
                result = collect(cursor)
            except self.engine.dialect.loaded_dbapi.Error as error:
                in_time = watchdog is None or watchdog.disarm(connection)
                disconnected = self.engine.dialect.is_disconnect(error, connection, cursor)
                _close_quietly(connection)
                if attempt == 2 or not disconnected or not in_time:
                    raise  # a server that let the bound pass gets no second wait
                # The server closed this connection (a restart): the idle ones are as dead.
                # Once more on a new connection, so that no request fails on a stale one.
                self.close_all()
                continue
            if watchdog is not None:
                watchdog.disarm(connection)
            self._put_back(generation, connection, cursor)
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


def prepared_statement(statement, dialect) -> _Prepared:
    key = (id(statement), dialect.name)
    if key not in _prepared_cache:
        _prepared_cache[key] = _Prepared(statement, dialect)
    return _prepared_cache[key]
