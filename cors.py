"""CORS for browser clients on other origins (SESSIONS_CORS_ORIGINS), with Flask-CORS.

Only installed when origins are configured: without them the app has no CORS hook at all,
and no request pays for one.
"""

import re

from flask import Flask, request
from flask_cors import CORS

API_PATHS = r"/api/.*"
ALLOWED_HEADERS = ["Content-Type", "Authorization"]
ALLOWED_METHODS = ["GET", "POST", "PATCH", "DELETE"]
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer


def init_cors(app: Flask) -> None:
    """Answer the configured origins, with credentials, on /api/*; nothing when none are set."""
    origins = app.config["CORS_ORIGINS"]
    if not origins:
        return
    app.after_request(_vary_on_origin)
    CORS(
        app,
        resources={API_PATHS: {}},
        # Exact, case-insensitive matches: Flask-CORS would read an origin holding [ or ]
        # (an IPv6 host) as a regular expression, and match it as a prefix.
        origins=[re.compile(re.escape(origin) + r"\Z", re.IGNORECASE) for origin in origins],
        supports_credentials=True,
        allow_headers=ALLOWED_HEADERS,
        methods=ALLOWED_METHODS,
        max_age=PREFLIGHT_MAX_AGE,
        send_wildcard=False,
        # Flask-CORS's default sends its headers even to a request with no Origin; never here.
        always_send=False,
        vary_header=False,  # _vary_on_origin says it on every API response, matched or not
    )


def _vary_on_origin(response):
    """Answers depend on Origin whether or not it matched: caches must keep them apart."""
    if request.path.startswith("/api/"):
        response.vary.add("Origin")
    return response
