"""Answers reach the server as one piece where they can (framework.WholeBodyResponse)."""

import io
import sys

import pytest
from conftest import cookie


def call(app, method, path, headers=None):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "test",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1"}
    environ.update({"HTTP_" + name.upper().replace("-", "_"): value for name, value in (headers or {}).items()})
    started = []
    body = app.wsgi_app(environ, lambda status, response_headers: started.append(status))
    return started[0], body


@pytest.mark.parametrize(("method", "path", "headers", "status"), [
    ("GET", "/api/user/sessions", {"Authorization": "tok-alice"}, "200 OK"),  # a token: no activity write
    ("GET", "/api/user/sessions", {}, "401 UNAUTHORIZED"),
    ("GET", "/api/nowhere", {}, "404 NOT FOUND"),
    ("GET", "/api/health", {}, "200 OK"),
])
def test_json_answers_are_one_bytes_object_in_a_list(app, method, path, headers, status):
    answered, body = call(app, method, path, headers)
    assert answered == status
    assert type(body) is list and len(body) == 1 and type(body[0]) is bytes and body[0].endswith(b"}\n")


def test_head_answers_have_no_body(app):
    answered, body = call(app, "HEAD", "/api/user/sessions", cookie("cookie-abc"))
    assert answered == "200 OK" and b"".join(body) == b""


def test_an_answer_with_an_activity_write_due_is_closed_by_the_server(app):
    """The last-activity write runs when the server closes the answer, so such an answer keeps
    werkzeug's closing iterator (one write a minute per session: SESSIONS_TOUCH_SECONDS)."""
    answered, body = call(app, "GET", "/api/user/sessions", cookie("cookie-abc"))
    assert answered == "200 OK" and type(body) is not list and hasattr(body, "close")
    assert b"".join(body).endswith(b"}\n")
    body.close()
