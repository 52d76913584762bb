"""The request path's queries stay on their indexes, so a large database costs no more per request."""

import pytest
from conftest import sqlite_only

import models
from database import db

HOT_STATEMENTS = {
    "token (and cookie)": models._SEEN_WITH_TOKEN,
    "cookie alone": models._SEEN_WITH_COOKIE,
    "session by token": models._SESSION_BY_TOKEN,
    "live sessions of a user": models._LIVE_SESSIONS,
    "verify by token (and cookie)": models._IDENTITY_BY_TOKEN,
    "verify by cookie": models._IDENTITY_BY_COOKIE,
}


@sqlite_only
@pytest.mark.parametrize("statement", HOT_STATEMENTS.values(), ids=HOT_STATEMENTS.keys())
def test_every_table_is_searched_by_an_index(app, statement):
    with app.app_context():
        compiled = statement.compile(dialect=db.engine.dialect)
        arguments = tuple({"token_hash": "t", "cookie_hash": "c", "now": "2026-01-01", "user_id": 1}[name]
                          for name in compiled.positiontup)
        plan = [row[3] for row in db.session.connection().exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", arguments)]
    assert plan
    for step in plan:
        assert not step.startswith("SCAN"), plan  # a SCAN reads the whole table
    assert all("INDEX" in step or "PRIMARY KEY" in step for step in plan if step.startswith("SEARCH")), plan
    assert not [step for step in plan if "TEMP B-TREE" in step], plan  # the index gives the order: no sort
