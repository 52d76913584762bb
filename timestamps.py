"""Timestamps on the wire: UTC, ISO 8601, milliseconds, Z (2024-03-15T10:30:00.000Z).

Stored timestamps are naive UTC (SQLAlchemy DateTime). The session list reads its
createdAt straight into wire text with `WireTimestamp`; everything else formats a datetime
with `format_timestamp`. Both give the same text for the same instant (tests/test_schemas.py).
"""

from datetime import datetime

from sqlalchemy import DateTime
from sqlalchemy.types import TypeDecorator


def format_timestamp(value: datetime) -> str:
    """2024-03-15T10:30:00.000Z: milliseconds cut, not rounded, as JavaScript's toISOString."""
    return value.isoformat(timespec="milliseconds") + "Z"


class WireTimestamp(TypeDecorator):
    """A stored DateTime read as its wire text, for `type_coerce(column, WireTimestamp())`.

    SQLite keeps a DateTime as text, 'YYYY-MM-DD HH:MM:SS.ffffff' (SQLAlchemy's storage
    format): the wire text is cut out of it without building a datetime, which would cost
    a list of ten sessions a tenth of its time. Any other value goes through the column
    type's own conversion, then format_timestamp.
    """

    impl = DateTime
    cache_ok = True

    def result_processor(self, dialect, coltype):
        to_datetime = self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype)

        def process(value):
            if value is None:
                return None
            if isinstance(value, str) and len(value) == 26 and value[10] == " " and value[19] == ".":
                return f"{value[:10]}T{value[11:23]}Z"
            return format_timestamp(to_datetime(value) if to_datetime else value)

        return process
