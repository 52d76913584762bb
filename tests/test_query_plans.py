"""The request path's queries stay on their indexes, so a large database costs no more per request.

Planned right after a seed of a realistic size, on whichever backend the suite runs: the seed
itself refreshes the planner's statistics (no ANALYZE here).
"""

import json
from datetime import timedelta

import pytest

from zipline_sessions.activity import idle
from zipline_sessions.auth import lookup, reads
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import db

# Each in every activity configuration (last_seen.py): off, recorded, recorded and shown.
HOT_STATEMENTS = {"session by token": reads._SESSION_BY_TOKEN}
for variant, (touch, fields) in {"": (False, False), ", activity": (True, False),
                                 ", activity shown": (True, True)}.items():
    statements = lookup.read_statements(touch, fields)
    HOT_STATEMENTS.update({
        f"token (and cookie){variant}": statements.seen_with_token,
        f"cookie alone{variant}": statements.seen_with_cookie,
        f"live sessions of a user{variant}": reads._live_sessions(fields),
        f"verify by token (and cookie){variant}": statements.identity_by_token,
        f"verify by cookie{variant}": statements.identity_by_cookie,
    })
# With an idle timeout (activity recorded), and the idle purge's searches.
idle_statements = lookup.read_statements(True, False, True)
HOT_STATEMENTS.update({
    "token (and cookie), idle": idle_statements.seen_with_token,
    "cookie alone, idle": idle_statements.seen_with_cookie,
    "live sessions of a user, idle": reads._live_sessions(False, True),
    "verify by token (and cookie), idle": idle_statements.identity_by_token,
    "verify by cookie, idle": idle_statements.identity_by_cookie,
    **{f"idle purge {n}": candidates.limit(100) for n, candidates in enumerate(idle.IDLE_CANDIDATES, 1)},
})
USERS, PER_USER = 2000, 10


@pytest.fixture
def seeded(make_app):
    """USERS users with PER_USER live sessions each and one expired one, as a bulk load leaves them."""
    app = make_app()
    document = {"users": [
        {"username": f"u{n}", "token": f"tok-{n}",
         "sessions": [{"token": f"c-{n}-{k}", "createdAt": f"2026-01-{1 + k:02d}T00:00:00Z",
                       "expiresAt": "2099-01-01T00:00:00Z"} for k in range(PER_USER)]
         + [{"token": f"c-{n}-old", "createdAt": "2025-01-01T00:00:00Z", "expiresAt": "2025-01-08T00:00:00Z"}]}
        for n in range(USERS)]}
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(document, app.config["TTL_SECONDS"], clock.utcnow()))
    return app


def arguments_for(compiled) -> dict:
    values = {"token_hash": "t" * 64, "cookie_hash": "c" * 64, "now": clock.utcnow(), "user_id": 7,
              "stale_before": clock.utcnow(), "idle_before": clock.utcnow() - timedelta(days=30)}
    return {name: values.get(name, bind.value) for name, bind in compiled.binds.items()}


@pytest.mark.parametrize("statement", HOT_STATEMENTS.values(), ids=HOT_STATEMENTS.keys())
def test_every_table_is_searched_by_an_index(seeded, statement):
    with seeded.app_context():
        connection = db.session.connection()
        if connection.dialect.name == "sqlite":
            assert_sqlite_plan(connection, statement)
        else:
            assert_postgresql_plan(connection, statement)


def assert_sqlite_plan(connection, statement) -> None:
    compiled = statement.compile(dialect=connection.dialect)
    values = arguments_for(compiled)
    processors = {name: bind.type.dialect_impl(connection.dialect).bind_processor(connection.dialect)
                  for name, bind in compiled.binds.items()}
    arguments = tuple(processors[name](values[name]) if processors[name] else values[name]
                      for name in compiled.positiontup)
    plan = [row[3] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", arguments)]
    assert plan
    for step in plan:
        assert not step.startswith("SCAN"), plan  # a SCAN reads the whole table
    assert all("INDEX" in step or "PRIMARY KEY" in step for step in plan if step.startswith("SEARCH")), plan
    assert not [step for step in plan if "TEMP B-TREE" in step], plan  # the index gives the order: no sort


def assert_postgresql_plan(connection, statement) -> None:
    compiled = statement.compile(dialect=connection.dialect)
    [[document]] = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", arguments_for(compiled)).all()
    plan = document if isinstance(document, list) else json.loads(document)
    nodes = list(walk(plan[0]["Plan"]))
    kinds = [node["Node Type"] for node in nodes]
    assert "Seq Scan" not in kinds, kinds  # reads the whole table
    assert "BitmapAnd" not in kinds, kinds  # the plan of stale statistics: the whole expiry index
    # A Sort may stand on top of the join: PostgreSQL does not infer that one user's index
    # walk is already in order. It sorts that one user's live sessions (a few) in memory.
    assert {node["Index Name"] for node in nodes if "Index Name" in node}, kinds


def walk(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def test_a_seed_leaves_the_planner_statistics_of_what_it_loaded(seeded):
    with seeded.app_context():
        connection = db.session.connection()
        if connection.dialect.name == "sqlite":
            counted = dict(connection.exec_driver_sql("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'sessions'").all())
            rows = int(counted["ix_sessions_user_id_created_at_id"].split()[0])
        else:
            rows = connection.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = 'sessions'").scalar()
    # Sampled estimates (SQLite reads a bounded sample); never analysed, PostgreSQL says -1
    # and SQLite has no row at all.
    assert rows >= USERS * PER_USER / 2
