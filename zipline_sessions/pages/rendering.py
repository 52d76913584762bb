"""How every page is answered: rendered from its template, with the headers that keep other
sites out (CSP, no framing, no sniffing, no referrer off-site, no caching); errors as pages."""

from pathlib import Path

from flask import current_app, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

STATIC = Path(__file__).parent / "static"
# The pages' only assets, read once: one stylesheet, one script (never inline).
ASSETS = {"pages.css": "text/css; charset=utf-8", "pages.js": "text/javascript; charset=utf-8"}
CSRF_MESSAGE = ("This form has expired or was not sent from this page. Go back, reload the page "
                "and try again.")


def content_security_policy() -> str:
    """Only this origin's stylesheet and script; forms post here and, after sign-in, redirect to
    this origin or a SESSIONS_REDIRECT_ORIGINS one (Chromium checks form-action on redirects)."""
    targets = " ".join(("'self'", *current_app.config["REDIRECT_ORIGINS"]))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"form-action {targets}; frame-ancestors 'none'; base-uri 'none'")


def secured(response):
    """The headers every page and asset carries."""
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy()
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["X-Frame-Options"] = "DENY"  # frame-ancestors for browsers without CSP 2
    headers["Cache-Control"] = "no-store"
    return response


def page(template: str, status: int = 200, headers: dict | None = None, **context):
    """A rendered page with its security headers."""
    response = current_app.response_class(render_template(template, **context), status=status,
                                          headers=headers, mimetype="text/html")
    return secured(response)


def asset(name: str):
    """One of ASSETS, from memory after the first read."""
    cache = current_app.extensions.setdefault("page_assets", {})
    if name not in cache:
        cache[name] = (STATIC / name).read_bytes()
    return secured(current_app.response_class(cache[name], mimetype=ASSETS[name].split(";")[0],
                                              content_type=ASSETS[name]))


def error_page(error: HTTPException):
    """An error on a page is a page: its status and headers (Retry-After, Allow), a sentence
    that says what happened and a way on."""
    if isinstance(error, CSRFError):
        message = CSRF_MESSAGE
    else:
        message = error.description
    headers = {name: value for name, value in error.get_response(request.environ).headers.items()
               if name in ("Retry-After", "Allow")}
    return page("error.html", status=error.code, headers=headers, title=error.name, message=message,
                retry_after=headers.get("Retry-After"))
