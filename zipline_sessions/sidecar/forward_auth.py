"""/api/auth/verify: a reverse proxy (nginx auth_request, Caddy forward_auth, Traefik
forwardAuth) asks whether a request is logged in, and as whom."""

from urllib.parse import quote

from flask import Blueprint, Response

from zipline_sessions.auth.caller import Identity, identify_caller

forward_auth = Blueprint("forward_auth", __name__, url_prefix="/api/auth")

# nginx's auth_request and Caddy's forward_auth ask with GET whatever the client's method was
# (they pass it in X-Original-Method / X-Forwarded-Method); other proxies may forward the
# client's own method, so every method answers (HEAD comes with GET). OPTIONS stays Flask's
# automatic answer, the CORS preflight: it never authenticates.
VERIFY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# Header values are printable ASCII; anything else in a name (and "%" itself, and spaces,
# which proxies trim at the ends) is percent-encoded as UTF-8, so every value decodes back.
_HEADER_SAFE = "".join(chr(code) for code in range(0x21, 0x7F) if chr(code) != "%")


@forward_auth.route("/verify", methods=VERIFY_METHODS)
def verify():
    """200, empty, naming the caller in headers when the request is logged in; 401 otherwise."""
    return allowed(identify_caller())


def allowed(identity: Identity) -> Response:
    """The empty 200 a proxy copies the caller's name from (Remote-User, X-Zipline-*)."""
    name = header_text(identity.username)
    headers = {"Remote-User": name, "X-Zipline-User-Id": str(identity.user_id), "X-Zipline-Username": name}
    if identity.session_id is not None:
        headers["X-Zipline-Session-Id"] = header_text(identity.session_id)
    response = Response(status=200, headers=headers)
    del response.headers["Content-Type"]  # no body, so no type
    return response


def header_text(text: str) -> str:
    """`text` as a header value: itself when printable ASCII without spaces or "%", else
    percent-encoded UTF-8 (`zoë` -> `zo%C3%AB`); urllib.parse.unquote reads it back."""
    return quote(text, safe=_HEADER_SAFE)
