"""The zipline-sessions Flask app: create_app() and the one `api` blueprint."""

import os

import click
from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

import cli
from schemas import (
    dump_session_list,
    health_schema,
    load_body,
    login_schema,
    logout_response_schema,
    revoke_schema,
)
from zipline_sessions.activity import events
from zipline_sessions.activity.last_seen import init_activity
from zipline_sessions.auth import sessions
from zipline_sessions.auth.caller import (
    clear_session_cookie,
    logged_in_session,
    resolve_caller,
    session_cookie,
    set_session_cookie,
)
from zipline_sessions.config.checks import ConfigError
from zipline_sessions.config.settings import load_settings, unknown_variables
from zipline_sessions.devices.location import init_location
from zipline_sessions.devices.useragent import warm_up
from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.fixture.cors import init_cors
from zipline_sessions.pages.views import init_pages
from zipline_sessions.security import credentials, security_log
from zipline_sessions.security.crosssite import refuse_cross_site
from zipline_sessions.security.ratelimit import check_login_attempt, init_rate_limits, limit_storage_problem
from zipline_sessions.sidecar.admin import admin
from zipline_sessions.sidecar.forward_auth import forward_auth
from zipline_sessions.sidecar.user import user_body, user_routes
from zipline_sessions.storage.database import (
    check_database_opens,
    configure_engine,
    db,
    engine_options,
    prepare_sqlite_file,
)
from zipline_sessions.storage.reader import Reader
from zipline_sessions.storage.schema import migrate, schema_is_current, schema_problem
from zipline_sessions.web.errors import register_error_handlers
from zipline_sessions.web.framework import SessionsApp
from zipline_sessions.web.logs import configure_app_logs
from zipline_sessions.web.schema_gate import init_schema_gate

api = Blueprint("api", __name__, url_prefix="/api")


@api.get("/user/sessions")
def list_user_sessions():
    """List the caller's current session and their other live sessions."""
    caller = resolve_caller()
    return dump_session_list(sessions.session_list(caller), caller.activity_fields)


@api.delete("/user/sessions")
def delete_user_sessions():
    """Revoke one other session, or all others, and answer the updated list."""
    caller = resolve_caller()
    return dump_session_list(sessions.revoke(caller, load_body(revoke_schema)), caller.activity_fields)


@api.post("/auth/login")
def login():
    """Log in with a username and password; opens a session and sets its cookie."""
    check_login_attempt()
    body = load_body(login_schema)
    user, token = sessions.log_in(body["username"], body["password"], request.user_agent.string,
                                  presented=session_cookie())
    response = jsonify({"user": user_body(user.id, user.username)})
    set_session_cookie(response, token)
    return response


@api.route("/auth/logout", methods=["GET", "POST"], head=False)
def logout():
    """End the session the cookie names and clear the cookie (never for another site)."""
    refuse_cross_site()
    sessions.log_out(logged_in_session())
    response = jsonify(logout_response_schema.dump({"loggedOut": True}))
    clear_session_cookie(response)
    return response


@api.get("/health")
def health():
    """200 when the database answers and its schema is current, and the login limit's storage
    answers; 503 otherwise. With a webhook, also how many events are owed and dead."""
    problem = schema_problem() or limit_storage_problem()
    if problem is not None:
        raise ServiceUnavailable(problem)
    return health_schema.dump({"status": "ok", **({"events": events.counts()} if events.enabled() else {})})


@api.get("/openapi.json")
def openapi_document():
    """The OpenAPI 3 document of this API (built on first use: a start does not pay for it)."""
    if "openapi" not in current_app.extensions:
        from zipline_sessions.web.openapi import build_openapi

        current_app.extensions["openapi"] = build_openapi(current_app)
    return current_app.extensions["openapi"]


def create_app(config: dict | None = None) -> Flask:
    """Build the app; `config` overrides defaults and SESSIONS_* variables (tests use it).

    Under `flask --app app ...` a wrong setting is one line and exit status 1, for --help too:
    Flask prints the traceback of an app that fails to load while it lists the commands.
    """
    try:
        return build_app(config)
    except ConfigError as error:
        if click.get_current_context(silent=True) is None:
            raise  # serve.py and tests handle it themselves
        error.show()
        raise SystemExit(error.exit_code) from None


def build_app(config: dict | None) -> Flask:
    app = SessionsApp(__name__)
    for warning in unknown_variables(os.environ):
        app.logger.warning(warning)
    load_settings(app, config)
    configure_app_logs(app)  # the app's own lines: stderr, at SESSIONS_LOG_LEVEL
    app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options(app.config)
    init_location(app)  # the GeoIP file, if any: a bad one stops the start before the database is opened
    db.init_app(app)
    if not app.config["TEST_CONTROL"] or app.config["SEED_FILE"]:
        # ua-parser is imported and compiles its matchers on first use; not during someone's
        # login, nor during a worker's first reset to the seed file. With test control and no
        # seed file, a fast start comes first: the first login brings them in.
        warm_up()
    credentials.set_hash_concurrency(app.config["HASH_CONCURRENCY"], app.config["HASH_QUEUE"],
                                     app.config["HASH_QUEUE_WAIT"])
    credentials.use_test_hasher(app.config["TEST_CONTROL"])
    credentials.warm_up()
    with app.app_context():
        prepare_sqlite_file(db.engine.url)
        configure_engine(db.engine, app.config, durable=not app.config["TEST_CONTROL"])
        check_database_opens(db.engine)
        app.extensions["reader"] = Reader(db.engine)
        init_activity(app)
        if app.config["AUTO_MIGRATE"]:
            new_database_from = _every_table() if app.config["TEST_CONTROL"] else None
            app.extensions["migrated_at_start"] = migration = migrate(new_database_from=new_database_from)
            if migration.ran or migration.built:
                app.logger.info("At start (SESSIONS_AUTO_MIGRATE): %s", migration.describe())
    if app.config["TRUSTED_PROXIES"]:
        # Behind N reverse proxies: believe their X-Forwarded-For / -Proto, and no more.
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    security_log.configure()
    register_error_handlers(app)
    init_schema_gate(app)
    app.register_blueprint(api)
    init_cors(app)
    app.register_blueprint(forward_auth)
    app.register_blueprint(admin)
    app.register_blueprint(user_routes)
    init_pages(app)
    init_rate_limits(app)
    if app.config["TEST_CONTROL"]:
        from zipline_sessions.fixture.test_control import init_test_control

        init_test_control(app)
    cli.register(app)
    if app.config["SEED_FILE"]:
        seed_at_start(app)
    return app


def _every_table():
    """Test control: every table's definition (its own tables too), to build a new database in one step."""
    from zipline_sessions.fixture import tables  # noqa: F401  (test control's tables join db.metadata)

    return db.metadata


def seed_at_start(app: Flask) -> None:
    """SESSIONS_SEED_FILE: seed a database that has no user; a bad file stops the start."""
    with app.app_context():
        if not schema_is_current():
            raise ConfigError("SESSIONS_SEED_FILE needs the database schema up to date: run flask --app app "
                              "db-upgrade, or leave SESSIONS_AUTO_MIGRATE on")
        try:
            counts = seeding.seed_empty_database(app.config["SEED_FILE"], app.config["TTL_SECONDS"],
                                              app.config["MAX_PER_USER"])
        except seed_file.SeedError as error:
            raise ConfigError(f"SESSIONS_SEED_FILE refused, nothing stored: {error}") from None
    if counts is None:
        app.logger.info("SESSIONS_SEED_FILE not loaded: the database already has users")
    else:
        app.logger.info("Seeded %d users and %d sessions from SESSIONS_SEED_FILE", *counts)
