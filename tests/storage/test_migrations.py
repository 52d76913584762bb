"""Schema upgrades keep data; the models and the migrations agree; health tells the truth."""

import shutil

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import cookie
from sqlalchemy import inspect, text

from zipline_sessions.fixture import tables as test_control_tables
from zipline_sessions.security.credentials import hash_token
from zipline_sessions.storage.database import db
from zipline_sessions.storage.schema import migrate

SESSIONS = "/api/user/sessions"


def test_a_database_at_the_first_revision_upgrades_to_head_keeping_everything(make_app):
    old = make_app(AUTO_MIGRATE=False)
    with old.app_context():
        migrate("0001")
        with db.engine.begin() as connection:
            connection.execute(
                text("INSERT INTO users (id, username, api_token_hash, created_at) VALUES (1, 'olga', :hash, :at)"),
                {"hash": hash_token("tok-olga"), "at": "2024-01-01 00:00:00.000000"},
            )
            connection.execute(
                text("INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at, ua, client, device) "
                     "VALUES (:id, :hash, 1, :created, '2099-01-01 00:00:00.000000', 'curl/8.5.0', 'curl', 'Unknown')"),
                [{"id": f"sess_o{n}", "hash": hash_token(f"cookie-o{n}"), "created": f"2024-01-0{n + 1} 00:00:00.000000"}
                 for n in range(3)],
            )
        assert "ix_sessions_user_id_created_at" in _indexes() and "ix_sessions_expires_at" not in _indexes()

    upgraded = make_app()  # AUTO_MIGRATE on: the start upgrades
    with upgraded.app_context():
        assert {"ix_sessions_expires_at", "ix_sessions_user_id_created_at_id"} <= _indexes()
        assert "ix_sessions_user_id_created_at" not in _indexes()
    client = upgraded.test_client(use_cookies=False)
    body = client.get(SESSIONS, headers={"Authorization": "tok-olga", **cookie("cookie-o1")}).json
    assert body["current"]["id"] == "sess_o1"
    assert [s["id"] for s in body["other"]] == ["sess_o0", "sess_o2"]
    assert client.get("/api/admin/users/olga/sessions", headers={"Authorization": "tok-olga"}).status_code == 403
    assert client.get("/api/health").status_code == 200


def test_the_models_match_the_migrations(app):
    # Every table of every capability, the test-control ones too (an app without test control
    # never imports them, but the migrations make them in every database).
    assert test_control_tables.ServiceClock.__table__.metadata is db.metadata
    with app.app_context(), db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), db.metadata) == []


def test_with_auto_migrate_off_the_operator_upgrades_by_command(make_app):
    app = make_app(AUTO_MIGRATE=False)
    with app.app_context():
        assert "users" not in inspect(db.engine).get_table_names()
    client = app.test_client()
    behind = client.get("/api/health")
    assert behind.status_code == 503
    assert behind.json == {"statusCode": 503, "error": "Service Unavailable",
                           "message": "Database schema is not up to date: run flask --app app db-upgrade"}
    result = app.test_cli_runner().invoke(args=["db-upgrade"])
    assert result.exit_code == 0, result.output
    assert client.get("/api/health").json == {"status": "ok"}


def test_health_is_503_when_the_database_does_not_answer(make_app, tmp_path):
    # A database that does not open stops the start (test_settings.py); here it goes away later.
    folder = tmp_path / "goes-away"
    app = make_app(DATABASE_URL=f"sqlite:///{folder}/sessions.db")
    with app.app_context():
        db.engine.dispose()
    shutil.rmtree(folder)
    response = app.test_client().get("/api/health")
    assert response.status_code == 503
    assert response.json["message"] == "Database unavailable"


def _indexes() -> set:
    return {index["name"] for index in inspect(db.engine).get_indexes("sessions")}
