"""A new database built in one step (create_all, then stamped at head: test control's fast start) is
the schema the migrations build, on SQLite and on PostgreSQL (SESSIONS_TEST_POSTGRES_URL)."""

from conftest import empty_database
from sqlalchemy import create_engine, inspect, text

from app import create_app
from zipline_sessions.fixture import tables as test_control_tables
from zipline_sessions.storage.database import db
from zipline_sessions.storage.schema import MIGRATIONS, migrate, newest_revisions, schema_is_current


def schema_of(url: str) -> dict:
    """Every table's columns, keys, indexes and constraints as the database reports them, and every
    row (the Alembic revision it is stamped at, the rows migrations insert)."""
    engine = create_engine(url)
    try:
        found = inspect(engine)
        schema = {"tables": sorted(found.get_table_names())}
        for table in schema["tables"]:
            schema[table] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], c.get("default"), c.get("autoincrement"))
                            for c in found.get_columns(table)],
                "primary key": found.get_pk_constraint(table)["constrained_columns"],
                "foreign keys": sorted((f["constrained_columns"], f["referred_table"], f["referred_columns"],
                                        tuple(sorted(f.get("options", {}).items())))
                                       for f in found.get_foreign_keys(table)),
                "indexes": sorted((i["name"], i["column_names"], bool(i["unique"])) for i in found.get_indexes(table)),
                "unique": sorted((u["column_names"]) for u in found.get_unique_constraints(table)),
                "checks": sorted(c["sqltext"] for c in found.get_check_constraints(table)),
            }
        with engine.connect() as connection:  # and the rows the migrations insert (the test clock's)
            schema["rows"] = {table: connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1").all()
                              for table in schema["tables"]}
        # The pages' signing key is random per database (made at the first start): its name counts.
        schema["rows"]["service_secrets"] = [(row[0], "<random>") for row in schema["rows"].get("service_secrets", [])]
        return schema
    finally:
        engine.dispose()


def build(url: str, **config) -> None:
    app = create_app({"TESTING": True, "DATABASE_URL": url, **config})
    with app.app_context():
        db.engine.dispose()


def test_a_new_database_built_in_one_step_equals_the_migrations_result(tmp_path, postgres_database):
    assert test_control_tables.ServiceClock.__table__.metadata is db.metadata
    migrated_url = empty_database(tmp_path / "migrated", postgres_database)
    build(migrated_url)  # test control off: the migrations, one by one
    migrated = schema_of(migrated_url)
    assert "test_clock" in migrated["tables"] and len(migrated["tables"]) >= 8
    assert migrated["rows"]["test_clock"] == [(1, None)] and migrated["rows"]["alembic_version"]

    one_step_url = empty_database(tmp_path / "one-step", postgres_database)  # PostgreSQL: emptied again
    build(one_step_url, TEST_CONTROL=True)
    assert schema_of(one_step_url) == migrated


def test_a_database_with_tables_is_migrated_not_rebuilt(make_app):
    old = make_app(AUTO_MIGRATE=False)
    with old.app_context():
        migrate("0001")
        with db.engine.begin() as connection:
            connection.execute(text("INSERT INTO users (id, username, created_at) VALUES (1, 'olga', :at)"),
                               {"at": "2024-01-01 00:00:00.000000"})
    upgraded = make_app(TEST_CONTROL=True)
    with upgraded.app_context():
        assert schema_is_current()
        assert db.session.execute(text("SELECT username FROM users")).scalars().all() == ["olga"]


def test_the_newest_revisions_read_from_the_files_are_alembics_heads():
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert newest_revisions() == frozenset(ScriptDirectory.from_config(config).get_heads())
    assert len(newest_revisions()) == 1
