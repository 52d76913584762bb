"""The request path's serializer and the marshmallow schema give the same body; timestamps
read as wire text equal those formatted from datetimes."""

import random
from collections import namedtuple
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

import models
from schemas import (
    ACTIVITY_SESSION_FIELDS,
    SESSION_FIELDS,
    ActivitySessionSchema,
    activity_session_list_schema,
    dump_session_list,
    session_list_schema,
)
from zipline_sessions.auth import reads
from zipline_sessions.storage.database import db
from zipline_sessions.storage.timestamps import InstantBound, format_timestamp

# The request path's rows: a Session's wire columns first and in order (then anything else),
# read by position; the schema reads them by attribute.
Row = namedtuple("Row", ["id", "created_at", "ua", "client", "device", "last_seen_at", "ip", "location", "user_id"])


def random_row(rng):
    created = datetime(2020, 1, 1) + timedelta(milliseconds=rng.randrange(10**11))
    # Rows carry createdAt as wire text already (timestamps.WireTimestamp).
    return Row(id=f"sess_{rng.randrange(10**9)}", created_at=format_timestamp(created), ua=rng.choice(["", "curl/8", 'é ☃ "q"']),
               client=rng.choice(["Chrome", "Unknown"]), device=rng.choice(["Desktop", "Mobile"]),
               last_seen_at=rng.choice([None, format_timestamp(created)]), ip=rng.choice([None, "203.0.113.0", "::1"]),
               location=rng.choice([None, {"country": "Germany", "countryCode": "DE", "city": None},
                                    {"country": "Japan", "countryCode": "JP", "city": "Tōkyō"}]),
               user_id=rng.randrange(100))


@pytest.mark.parametrize("seed", range(20))
def test_fast_dump_equals_the_schema_dump(seed):
    rng = random.Random(seed)
    listing = {"current": rng.choice([None, random_row(rng)]),
               "other": [random_row(rng) for _ in range(rng.randrange(12))]}
    assert dump_session_list(listing) == session_list_schema.dump(listing)
    assert dump_session_list(listing, activity_fields=True) == activity_session_list_schema.dump(listing)


def test_the_request_paths_columns_come_in_the_schemas_field_order():
    """dump_session_list reads the rows by position: the columns models reads must be the
    schema's attributes, in its order."""
    fields = ActivitySessionSchema().fields
    assert ACTIVITY_SESSION_FIELDS[:len(SESSION_FIELDS)] == SESSION_FIELDS
    assert [column.key for column in (*models.PUBLIC_COLUMNS, *models.ACTIVITY_COLUMNS)] == [
        fields[name].attribute or name for name in ACTIVITY_SESSION_FIELDS]


@pytest.mark.parametrize("moment", [datetime(2024, 3, 15, 10, 30), datetime(2024, 3, 15, 10, 30, 0, 7),
                                    datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999_999)])
def test_the_request_paths_now_is_written_as_sqlalchemy_writes_it(moment):
    """timestamps.InstantBound gives SQLite the text SQLAlchemy's own DateTime would: the reads
    compare it with stored text."""
    dialect = sqlite.dialect()
    assert (InstantBound().bind_processor(dialect)(moment)
            == DateTime().dialect_impl(dialect).bind_processor(dialect)(moment))


@pytest.mark.parametrize(("value", "text"), [
    (datetime(2024, 3, 15, 10, 30), "2024-03-15T10:30:00.000Z"),
    (datetime(2024, 3, 15, 10, 30, 0, 999_999), "2024-03-15T10:30:00.999Z"),
    (datetime(1999, 12, 31, 23, 59, 59, 1000), "1999-12-31T23:59:59.001Z"),
])
def test_timestamps_have_milliseconds_and_z(value, text):
    assert format_timestamp(value) == text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)))
def test_stored_timestamps_read_as_the_text_format_timestamp_gives(app, created):
    """Whatever instant is stored, the list query's wire text is format_timestamp's."""
    with app.app_context():
        db.session.execute(models.LoginSession.__table__.update().where(models.LoginSession.id == "sess_bob1")
                           .values(created_at=created))
        db.session.commit()
        [row] = reads.list_sessions(user_id=2)
    assert row.created_at == format_timestamp(created)
