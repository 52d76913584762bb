"""Timestamps on the wire: UTC, ISO 8601, milliseconds, Z (2024-03-15T10:30:00.000Z).

Stored timestamps are naive UTC (SQLAlchemy DateTime). The session list reads its
createdAt straight as wire text with `WireTimestamp`; everything else formats a datetime
with `format_timestamp`. Both give the same text for the same instant (tests/test_schemas.py).
"""

from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import DateTime, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

# Dialects whose SQL writes the wire text itself (see _wire_text below).
FORMATTED_IN_SQL = {"sqlite", "postgresql"}


def format_timestamp(value: datetime) -> str:
    """2024-03-15T10:30:00.000Z: milliseconds cut, not rounded, as JavaScript's toISOString."""
    return value.isoformat(timespec="milliseconds") + "Z"


class WireTimestamp(TypeDecorator):
    """A stored DateTime read as its wire text, for `type_coerce(column, WireTimestamp())`.

    On SQLite and PostgreSQL the SELECT itself writes the text, so a list of sessions is read
    without a Python call per row (a tenth of a GET's own work when it was done in Python).
    Other databases read a datetime and format it here.
    """

    impl = DateTime
    cache_ok = True

    def column_expression(self, column):
        return _wire_text(column)

    def result_processor(self, dialect, coltype):
        if dialect.name in FORMATTED_IN_SQL:
            return None
        to_datetime = self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype)
        return lambda value: None if value is None else format_timestamp(to_datetime(value) if to_datetime else value)


class _wire_text(FunctionElement):
    """The wire text of a stored DateTime, written by the database where it can."""

    type = String()
    inherit_cache = True


@compiles(_wire_text)
def _read_as_stored(element, compiler, **kw):
    return compiler.process(element.clauses, **kw)  # WireTimestamp.result_processor formats it


@compiles(_wire_text, "sqlite")
def _sqlite_wire_text(element, compiler, **kw):
    # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff': cut it, as format_timestamp cuts.
    column = compiler.process(element.clauses, **kw)
    return f"substr({column}, 1, 10) || 'T' || substr({column}, 12, 12) || 'Z'"


@compiles(_wire_text, "postgresql")
def _postgresql_wire_text(element, compiler, **kw):
    column = compiler.process(element.clauses, **kw)
    return f"""to_char({column}, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


class SecondsBound(TypeDecorator):
    """A DateTime parameter given in whole seconds (the activity throttle's `stale_before`): its
    conversion for the driver is remembered, so the GET pays for it once a second, not per request."""

    impl = DateTime
    cache_ok = True

    def bind_processor(self, dialect):
        convert = self.impl_instance.dialect_impl(dialect).bind_processor(dialect)
        return None if convert is None else lru_cache(maxsize=4)(convert)


class InstantBound(TypeDecorator):
    """A DateTime parameter that changes on every request (the request path's `now`): on SQLite
    written by datetime.isoformat, in C, rather than SQLAlchemy's %-format of seven fields. The
    same text, 'YYYY-MM-DD HH:MM:SS.ffffff', for the naive UTC datetimes stored here
    (tests/test_schemas.py); elsewhere SQLAlchemy's own conversion."""

    impl = DateTime
    cache_ok = True

    def bind_processor(self, dialect):
        convert = self.impl_instance.dialect_impl(dialect).bind_processor(dialect)
        if convert is None or dialect.name != "sqlite":
            return convert

        def to_text(value):
            if type(value) is datetime and value.tzinfo is None:
                return value.isoformat(" ", "microseconds")
            return convert(value)

        return to_text


@lru_cache(maxsize=65536)  # fixtures repeat their dates; a million sessions may share a few
def parse_date(text: str) -> datetime | None:
    """ISO 8601 text as naive UTC to the millisecond (no offset: UTC); None when it is not a date."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)
