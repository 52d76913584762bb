"""The pages under /auth/: sign in, "Your devices", sign out. Each runs the API's own code
(auth/sessions.py: the same lock, events, security log, rate limit, rotation and cap)."""

from flask import Blueprint, abort, flash, redirect, request
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest, HTTPException, NotFound, Unauthorized

from schemas import describe_errors, login_schema, revoke_schema
from zipline_sessions.auth import sessions
from zipline_sessions.auth.caller import (
    clear_session_cookie,
    current_session,
    resolve_caller,
    session_cookie,
    set_session_cookie,
)
from zipline_sessions.pages import devices
from zipline_sessions.pages.csrf import check_token, forget_tokens, init_csrf, page_token
from zipline_sessions.pages.redirects import HOME, login_url, safe_redirect
from zipline_sessions.pages.rendering import ASSETS, asset, error_page, page, secured
from zipline_sessions.security.crosssite import refuse_cross_site
from zipline_sessions.security.ratelimit import check_login_attempt

pages = Blueprint("pages", __name__, url_prefix="/auth", template_folder="templates")
pages.add_app_template_filter(devices.readable, "readable")
CROSS_SITE_FORM = "Another site sent this form: nothing was changed."
LOGIN = "/auth/login"


def init_pages(app) -> None:
    """SESSIONS_PAGES: the pages, their CSRF protection and their cookie; off, /auth/ is a 404."""
    if app.config["PAGES"]:
        app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True  # no blank lines where tags stood
        init_csrf(app)
        app.register_blueprint(pages)


@pages.get("/login")
def login_form():
    """The sign-in form; the proxy's hand-over (X-Original-URI and no rd) comes back with rd set."""
    original = request.headers.get("X-Original-URI")
    if original is not None and "rd" not in request.args:
        return secured(redirect(login_url(original), 302))
    return login_page(200, "", safe_redirect(request.args.get("rd")))


@pages.post("/login")
def login():
    """Sign in: 303 to rd (or "Your devices"); the form again, 401, on a wrong username or password."""
    presented = current_session()
    posted_form(presented and presented.id)
    username, rd = request.form.get("username", ""), safe_redirect(request.form.get("rd"))
    check_login_attempt(username)
    body = load_fields(login_schema, username=username, password=request.form.get("password", ""))
    try:
        _, token = sessions.log_in(body["username"], body["password"], request.user_agent.string,
                                   presented=session_cookie())
    except Unauthorized as error:
        return login_page(401, username, rd, error.description)
    return signed_in(token, rd)


@pages.get("/sessions")
def devices_page():
    """Your devices: this browser's session first, then the others, most recently used first."""
    caller = signed_in_caller()
    return page("sessions.html", title="Your devices", token=page_token(caller.session_id),
                **devices.listing(caller))


@pages.post("/sessions")
def revoke_sessions():
    """Sign out one other session (`session`), or all the others (`all`), then back to the list."""
    refuse_cross_site(message=CROSS_SITE_FORM)  # before anything else, as on every page POST
    caller = signed_in_caller()
    posted_form(caller.session_id)
    before = len(caller.sessions)
    after = sessions.revoke(caller, revoke_body())
    flash(devices.signed_out_message(before - 1 - len(after["other"])))
    return secured(redirect(request.path, 303))


@pages.post("/logout")
def logout():
    """Sign out here: end this browser's session, then the sign-in form."""
    session = current_session()
    posted_form(session and session.id)
    if session is not None:
        sessions.log_out(session)
    forget_tokens()
    return secured(clear_session_cookie(redirect(LOGIN, 303)))


@pages.get("/static/<name>")
def static_asset(name: str):
    """The pages' stylesheet and script."""
    if name not in ASSETS:
        raise NotFound()
    return asset(name)


@pages.errorhandler(HTTPException)
def page_error(error: HTTPException):
    """Errors under /auth/ are pages (a redirect raised by abort() is answered as it is)."""
    if error.response is not None:
        return secured(error.response)
    return error_page(error)


def posted_form(login_session_id: str | None) -> None:
    """Every page POST: refused when another site sent it, or without a CSRF token issued for
    this browser's login session (its id; None: not signed in)."""
    refuse_cross_site(message=CROSS_SITE_FORM)
    check_token(login_session_id)


def login_page(status: int, username: str, rd: str, message: str | None = None):
    """The sign-in form (the username kept, never the password), its token bound to whatever
    session this browser holds now."""
    signed_in = current_session()
    return page("login.html", status=status, title="Sign in", username=username,
                rd="" if rd == HOME else rd, message=message, token=page_token(signed_in and signed_in.id))


def signed_in(token: str, rd: str):
    """After sign-in: the new session's cookie, a new token for the next form, 303 to rd."""
    forget_tokens()
    response = redirect(rd, 303)
    set_session_cookie(response, token)
    return secured(response)


def signed_in_caller():
    """This browser's session and its user's; not signed in: to the sign-in form, and back here."""
    try:
        return resolve_caller(cookie_only=True)
    except Unauthorized:
        response = redirect(login_url(request.full_path.rstrip("?")), 303 if request.method == "POST" else 302)
        if session_cookie() is not None:
            clear_session_cookie(response)  # the browser stops sending what logs no one in
        abort(response)


def revoke_body() -> dict:
    """The form as the API's revoke body: `all` (all the others) or `session` (one id)."""
    if request.form.get("all") == "others":
        return {"all": True}
    return load_fields(revoke_schema, sessionId=request.form.get("session", ""))


def load_fields(schema, **fields) -> dict:
    """The form's fields checked by the API's own schema; 400 naming what is wrong."""
    try:
        return schema.load(fields)
    except ValidationError as error:
        raise BadRequest(describe_errors(error.messages)) from None
