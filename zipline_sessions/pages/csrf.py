"""The pages' CSRF tokens: Flask-WTF's CSRFProtect, on the pages' POSTs only, each token bound
to the browser's login session.

Flask-WTF keeps its raw token in Flask's session: a small signed cookie, here named
`zipline_pages`, sent to /auth/ only, HttpOnly, SameSite=Lax, Secure as the session cookie is.
Beside the token it keeps which login session the token was issued for (that session's public
id, or "" before sign-in). A token is accepted only while the browser's login session is still
that one: signing in or out makes a new token, and a token (or a whole cookie) made for another
login session, another user or no session is refused. The JSON API never reads that cookie and
never checks a token (WTF_CSRF_CHECK_DEFAULT off): programs keep working as they did.
"""

from flask import Flask, current_app, session
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect, generate_csrf

from zipline_sessions.auth.caller import cookie_is_secure
from zipline_sessions.pages.secret import stored_key
from zipline_sessions.storage.schema import schema_is_current

PAGES_PREFIX = "/auth/"
BOUND_TO = "for"  # the key, in Flask's session, of the login session a token was issued for

csrf = CSRFProtect()


class PagesSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, opened only for the pages: every other request gets
    Flask's null session and pays nothing (no cookie parsed, nothing signed)."""

    def open_session(self, app, request):
        if not request.environ.get("PATH_INFO", "").startswith(PAGES_PREFIX):
            return None
        if not app.config["SECRET_KEY"]:
            gate = app.extensions.get("schema_gate")  # web/schema_gate.py: closed while the schema is behind
            if gate is not None and gate.still_behind():
                return None  # no key table yet: a null session, and the gate answers 503 first
            # Not read at start (the schema was behind then): from the database, once.
            app.config["SECRET_KEY"] = stored_key()
        return super().open_session(app, request)

    def get_cookie_name(self, app) -> str:
        return "zipline_pages"

    def get_cookie_path(self, app) -> str:
        return PAGES_PREFIX

    def get_cookie_httponly(self, app) -> bool:
        return True

    def get_cookie_samesite(self, app) -> str:
        return "Lax"

    def get_cookie_secure(self, app) -> bool:
        return cookie_is_secure()


def init_csrf(app: Flask) -> None:
    """CSRFProtect for the pages: tokens never time out on their own (they end with the login
    session they are bound to); the Origin check (crosssite.refuse_cross_site) stands in for
    Flask-WTF's HTTPS Referer check, which cannot know SESSIONS_PUBLIC_ORIGIN."""
    app.config.update(WTF_CSRF_CHECK_DEFAULT=False, WTF_CSRF_TIME_LIMIT=None, WTF_CSRF_SSL_STRICT=False)
    app.session_interface = PagesSessionInterface()
    csrf.init_app(app)
    # CSRFProtect's app-wide hook does nothing with WTF_CSRF_CHECK_DEFAULT off; removed, every
    # API request skips Flask's before-request machinery again (web/framework.py).
    hooks = app.before_request_funcs.get(None, [])
    hooks[:] = [hook for hook in hooks if getattr(hook, "__module__", "") != "flask_wtf.csrf"]
    if not hooks:
        app.before_request_funcs.pop(None, None)
    if not app.config["SECRET_KEY"]:
        with app.app_context():
            if schema_is_current():
                app.config["SECRET_KEY"] = stored_key()


def page_token(login_session_id: str | None) -> str:
    """The CSRF token for a form shown to the browser whose login session is `login_session_id`
    (None: not signed in); a new one when the last was issued for another login session."""
    bound = login_session_id or ""
    if session.get(BOUND_TO) != bound:
        session.pop(current_app.config["WTF_CSRF_FIELD_NAME"], None)
        session[BOUND_TO] = bound
    return generate_csrf()


def check_token(login_session_id: str | None) -> None:
    """Flask-WTF's check of the posted token, then that it was issued for this login session;
    CSRFError (400) otherwise."""
    csrf.protect()
    if session.get(BOUND_TO) != (login_session_id or ""):
        raise CSRFError("The form was made for another sign-in.")


def forget_tokens() -> None:
    """At sign-in and sign-out: the next form gets a new token, bound to the new state."""
    session.clear()
