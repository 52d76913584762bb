"""A database behind the code (SESSIONS_AUTO_MIGRATE off): every route answers 503 naming the
upgrade command, never a 500, until `db-upgrade` runs; then everything serves again."""

import threading

import pytest
from conftest import SEED, cookie
from live_server import LiveServer, wait_for
from sqlalchemy import text

from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage import clock
from zipline_sessions.storage.database import db
from zipline_sessions.storage.schema import BEHIND_MESSAGE, _script_directory

ALICE = {"Authorization": "tok-alice", **cookie("cookie-abc")}
# The migrations, oldest first, as Alembic orders them: the newest is the head.
REVISIONS = [script.revision for script in reversed(list(_script_directory().walk_revisions()))]
HEAD = REVISIONS[-1]


def ran_after(revision: str | None) -> str:
    """The revisions an upgrade from `revision` (None: an empty database) runs, as reported."""
    return ", ".join(REVISIONS[REVISIONS.index(revision) + 1:] if revision else REVISIONS)


def behind_app(make_app, revision: str = "0006", **overrides):
    """An app with auto-migrate off on a database made at `revision`, holding SEED (made at head,
    then stepped back: the rows of users and sessions stay)."""
    app = make_app(**overrides)
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(SEED, app.config["TTL_SECONDS"], clock.utcnow()))
        _step_back_to(revision)
    return make_app(AUTO_MIGRATE=False, **overrides)


def _step_back_to(revision: str) -> None:
    from alembic import command

    from zipline_sessions.storage.schema import _alembic_config

    config = _alembic_config()
    with db.engine.connect() as connection, connection.begin():
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def every_route(app):
    """(method, path) for every method of every route the app has, test control's included."""
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<path:username>", "alice")
        for method in sorted(rule.methods - {"OPTIONS"}):
            yield method, path
    yield "GET", "/no/such/route"


@pytest.mark.parametrize("profile", ["contract", "zipline-v4"])
def test_every_route_answers_503_naming_the_upgrade_command(make_app, profile):
    app = behind_app(make_app, TEST_CONTROL=True, ERROR_PROFILE=profile)
    client = app.test_client(use_cookies=False)
    routes = list(every_route(app))
    assert {"/api/auth/verify", "/api/admin/users/alice/sessions", "/api/user", "/__test__/reset"} <= {
        path for _, path in routes}
    for method, path in routes:
        response = client.open(path, method=method, headers=ALICE, json={"all": True})
        assert response.status_code == 503, (method, path, response.data)
        if path.startswith("/auth/"):  # a person's page: an error page with the same message
            assert response.content_type.startswith("text/html")
            assert method == "HEAD" or "flask --app app db-upgrade" in response.get_data(as_text=True)
            continue
        assert response.content_type == "application/json"
        if method == "HEAD":
            continue
        if profile == "contract":
            assert response.json == {"statusCode": 503, "error": "Service Unavailable", "message": BEHIND_MESSAGE}
        else:
            assert response.json == {"error": f"E6003: {BEHIND_MESSAGE}", "code": 6003, "statusCode": 503}
    assert "flask --app app db-upgrade" in BEHIND_MESSAGE

    result = app.test_cli_runner().invoke(args=["db-upgrade"])
    assert result.exit_code == 0, result.output
    assert result.output == f"Upgraded the database schema from 0006 to {HEAD} (ran {ran_after('0006')}).\n"
    listed = client.get("/api/user/sessions", headers=ALICE)
    # (The zipline-v4 profile's cookie is zipline_session: there ALICE's cookie names no session.)
    seen = [session["id"] for session in [listed.json["current"] or {}, *listed.json["other"]] if session]
    assert listed.status_code == 200 and "sess_abc123" in seen
    assert client.get("/api/health").json == {"status": "ok"}


def test_a_preflight_still_passes_while_behind(make_app):
    app = behind_app(make_app, CORS_ORIGINS="http://localhost:5173")
    client = app.test_client(use_cookies=False)
    origin = {"Origin": "http://localhost:5173"}
    preflight = client.options("/api/user/sessions", headers={**origin, "Access-Control-Request-Method": "DELETE"})
    assert preflight.status_code == 200
    response = client.get("/api/user/sessions", headers={**ALICE, **origin})
    assert response.status_code == 503
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"  # the browser can read it


def test_a_current_database_installs_no_gate(app):
    assert "schema_gate" not in app.extensions
    assert not app.before_request_funcs  # the request path pays nothing for it


def test_db_upgrade_says_what_it_did(make_app):
    app = make_app(AUTO_MIGRATE=False)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["db-upgrade"])
    assert first.exit_code == 0, first.output
    assert first.output == f"Upgraded the database schema from an empty database to {HEAD} (ran {ran_after(None)}).\n"
    again = runner.invoke(args=["db-upgrade"])
    assert again.output == f"Database schema is at {HEAD} (the newest): nothing to do.\n"


def test_db_upgrade_reports_what_its_own_start_migrated(make_app):
    # Under `flask --app app db-upgrade` with SESSIONS_AUTO_MIGRATE on (the default), the app's
    # start migrates before the command runs: the command still says what happened.
    behind_app(make_app, revision="0005")
    app = make_app()  # auto-migrate on: this start upgrades
    assert app.extensions["migrated_at_start"].ran == tuple(ran_after("0005").split(", "))
    result = app.test_cli_runner().invoke(args=["db-upgrade"])
    assert result.output == f"Upgraded the database schema from 0005 to {HEAD} (ran {ran_after('0005')}).\n"


def test_a_start_with_auto_migrate_logs_the_migrations_it_ran(make_app, caplog):
    behind_app(make_app, revision="0004")
    caplog.set_level("INFO", logger="app")
    caplog.clear()
    make_app()
    assert [r.getMessage() for r in caplog.records if "database schema" in r.getMessage()] == [
        (f"At start (SESSIONS_AUTO_MIGRATE): Upgraded the database schema from 0004 to {HEAD} "
         f"(ran {ran_after('0004')}).")]
    caplog.clear()
    make_app()  # nothing to do: nothing said
    assert not [r for r in caplog.records if "database schema" in r.getMessage()]


def test_a_database_newer_than_the_code_is_served_and_db_upgrade_refuses(make_app, caplog):
    app = make_app()
    with app.app_context(), db.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0999_from_the_future'"))
    newer = make_app(AUTO_MIGRATE=False)
    assert "schema_gate" not in newer.extensions
    assert "newer than this release knows" in caplog.text
    assert newer.test_client().get("/api/health").json == {"status": "ok"}
    result = newer.test_cli_runner().invoke(args=["db-upgrade"])
    assert result.exit_code == 1
    assert "at 0999_from_the_future, which this release does not know" in result.output
    assert make_app().extensions["migrated_at_start"].ahead  # auto-migrate leaves it alone too


def test_a_real_server_under_load_answers_503_then_serves_after_the_upgrade(tmp_path, database_url, make_app):
    behind_app(make_app)
    server = LiveServer(tmp_path, database_url, None, workers=2, env={"SESSIONS_AUTO_MIGRATE": "false"}).start(503)
    statuses, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            status, _, body = server.request("GET", "/api/user/sessions", ALICE)
            statuses.append((status, body if status != 200 else None))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(statuses) >= 200, "200 answers while behind", seconds=60)
        assert {status for status, _ in statuses} == {503}
        assert statuses[0][1] == {"statusCode": 503, "error": "Service Unavailable", "message": BEHIND_MESSAGE}
        output = server.flask("db-upgrade")  # another process, as an operator would
        assert output == f"Upgraded the database schema from 0006 to {HEAD} (ran {ran_after('0006')}).\n"
        wait_for(lambda: statuses[-1][0] == 200 and server.request("GET", "/api/user/sessions", ALICE)[0] == 200
                 and server.request("GET", "/api/auth/verify", ALICE)[0] == 200, "every worker serving", seconds=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        server.stop()
    assert {status for status, _ in statuses} == {200, 503}  # never a 500, nor anything else
    log = server.log.read_text()
    assert "Traceback" not in log
    assert log.count("The database schema is behind this release") == 1  # said once, at start


