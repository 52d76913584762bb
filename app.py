"""The zipline-sessions Flask app: create_app() and the one `api` blueprint."""

import os

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

import cli
import credentials
import events
import security_log
import seed
import sessions
from account import account
from activity import init_activity
from admin import admin
from auth import clear_session_cookie, logged_in_session, resolve_caller, session_cookie, set_session_cookie
from cors import init_cors
from crosssite import refuse_cross_site
from database import (
    Reader,
    check_database_opens,
    configure_engine,
    db,
    migrate,
    prepare_sqlite_file,
    schema_is_current,
    schema_problem,
)
from errors import register_error_handlers
from forward_auth import forward_auth
from framework import SessionsApp
from openapi import build_openapi
from ratelimit import check_login_attempt, init_rate_limits, limit_storage_problem
from schemas import (
    dump_session_list,
    health_schema,
    load_body,
    login_response_schema,
    login_schema,
    logout_response_schema,
    revoke_schema,
)
from settings import ConfigError, load_settings, unknown_variables
from useragent import warm_up

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
    response = jsonify(login_response_schema.dump({"user": user}))
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
    """The OpenAPI 3 document of this API."""
    return current_app.extensions["openapi"]


def create_app(config: dict | None = None) -> Flask:
    """Build the app; `config` overrides defaults and SESSIONS_* variables (tests use it)."""
    app = SessionsApp(__name__)
    for warning in unknown_variables(os.environ):
        app.logger.warning(warning)
    load_settings(app, config)
    db.init_app(app)
    warm_up()  # ua-parser compiles its matchers on first use; not during someone's login
    credentials.set_hash_concurrency(app.config["HASH_CONCURRENCY"])
    credentials.warm_up()
    with app.app_context():
        prepare_sqlite_file(db.engine.url)
        configure_engine(db.engine)
        check_database_opens(db.engine)
        app.extensions["reader"] = Reader(db.engine)
        init_activity(app)
        if app.config["AUTO_MIGRATE"]:
            migrate()
    if app.config["TRUSTED_PROXIES"]:
        # Behind N reverse proxies: believe their X-Forwarded-For / -Proto, and no more.
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    security_log.configure()
    register_error_handlers(app)
    app.register_blueprint(api)
    init_cors(app)
    app.register_blueprint(forward_auth)
    app.register_blueprint(admin)
    app.register_blueprint(account)
    init_rate_limits(app)
    if app.config["TEST_CONTROL"]:
        from test_control import init_test_control  # test-only code: not even imported otherwise

        init_test_control(app)
    cli.register(app)
    app.extensions["openapi"] = build_openapi(app)
    if app.config["SEED_FILE"]:
        seed_at_start(app)
    return app


def seed_at_start(app: Flask) -> None:
    """SESSIONS_SEED_FILE: seed a database that has no user; a bad file stops the start."""
    with app.app_context():
        if not schema_is_current():
            raise ConfigError("SESSIONS_SEED_FILE needs the database schema up to date: run flask --app app "
                              "db-upgrade, or leave SESSIONS_AUTO_MIGRATE on")
        try:
            counts = seed.seed_empty_database(app.config["SEED_FILE"], app.config["TTL_SECONDS"],
                                              app.config["MAX_PER_USER"])
        except seed.SeedError as error:
            raise ConfigError(f"SESSIONS_SEED_FILE refused, nothing stored: {error}") from None
    if counts is None:
        app.logger.info("SESSIONS_SEED_FILE not loaded: the database already has users")
    else:
        app.logger.info("Seeded %d users and %d sessions from SESSIONS_SEED_FILE", *counts)
