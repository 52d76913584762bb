"""Two constant apps for the benchmark: what a request costs before any of the work is done.

`raw` is a WSGI function returning a constant JSON body (the floor's own overhead);
`flask_app` is a Flask app whose one view returns a constant JSON body (the service's), handed
to the server in one piece as the service's answers are (framework.WholeBodyResponse).
The service's microseconds above `flask_app` and the floor's above `raw` are its own work.
"""

from flask import Flask

from zipline_sessions.web.framework import WholeBodyResponse

BODY = b'{"current":null,"other":[]}\n'


def raw(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))])
    return [BODY]


flask_app = Flask(__name__)
flask_app.response_class = WholeBodyResponse


@flask_app.get("/api/user/sessions")
def constant():
    """A constant body."""
    return flask_app.response_class(BODY, mimetype="application/json")
