"""The zipline-sessions Flask app: create_app() and the one `api` blueprint."""

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import ServiceUnavailable, Unauthorized
from werkzeug.middleware.proxy_fix import ProxyFix

import cli
import events
import security_log
import sessions
from activity import init_activity
from admin import admin
from auth import INVALID_SESSION, clear_session_cookie, current_session, resolve_caller, set_session_cookie
from cors import init_cors
from database import Reader, configure_engine, db, migrate, schema_problem
from errors import register_error_handlers
from forward_auth import forward_auth
from jsonprovider import OrjsonProvider
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
from settings import load_settings
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
    user, token = sessions.log_in(body["username"], body["password"], request.user_agent.string)
    response = jsonify(login_response_schema.dump({"user": user}))
    set_session_cookie(response, token)
    return response


@api.route("/auth/logout", methods=["GET", "POST"])
def logout():
    """End the session the cookie names and clear the cookie."""
    session = current_session()
    if session is None:
        raise Unauthorized(INVALID_SESSION)
    sessions.log_out(session)
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
    app = Flask(__name__, instance_relative_config=True)
    load_settings(app, config)
    app.json = OrjsonProvider(app)
    db.init_app(app)
    warm_up()  # ua-parser compiles its matchers on first use; not during someone's login
    with app.app_context():
        configure_engine(db.engine)
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
    init_rate_limits(app)
    cli.register(app)
    app.extensions["openapi"] = build_openapi(app)
    return app
