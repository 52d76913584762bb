"""Every bad input gets the contract's error shape, and changes nothing."""

import json

import pytest
from conftest import assert_error, cookie

from zipline_sessions.storage.database import db

URL = "/api/user/sessions"
ALICE = {"Authorization": "tok-alice", **cookie("cookie-abc")}


def listing(client):
    return client.get(URL, headers={"Authorization": "tok-alice"}).json


BAD_DELETE_BODIES = {
    "malformed": "{",
    "empty": "",
    "trailing-garbage": '{"all": true} x',
    "array": '[{"all": true}]',
    "string": '"sess_def456"',
    "null": "null",
    "number": "1",
    "neither": "{}",
    "all-false": '{"all": false}',
    "all-string": '{"all": "true"}',
    "all-one": '{"all": 1}',
    "all-null": '{"all": null}',
    "both": '{"sessionId": "sess_def456", "all": true}',
    "empty-session-id": '{"sessionId": ""}',
    "session-id-number": '{"sessionId": 123}',
    "session-id-null": '{"sessionId": null}',
    "session-id-list": '{"sessionId": ["sess_def456"]}',
    "session-id-object": '{"sessionId": {"id": "sess_def456"}}',
    "session-id-surrogate": '{"sessionId": "\\ud800"}',
    "session-id-nul": '{"sessionId": "sess_def456\\u0000"}',  # PostgreSQL cannot hold NUL: refused on both
    "session-id-too-long": json.dumps({"sessionId": "s" * 300}),
    "invalid-utf8": b'{"sessionId": "\xff"}',
    "deeply-nested": "[" * 5000 + "]" * 5000,
    "nan": '{"sessionId": NaN}',
}


@pytest.mark.parametrize("body", BAD_DELETE_BODIES.values(), ids=BAD_DELETE_BODIES.keys())
def test_bad_delete_bodies_are_400_and_change_nothing(client, body):
    before = listing(client)
    response = client.delete(URL, headers=ALICE, data=body, content_type="application/json")
    assert_error(response, 400, "Bad Request")
    assert listing(client) == before


def test_both_and_neither_say_what_is_expected(client):
    both = client.delete(URL, headers=ALICE, json={"sessionId": "sess_def456", "all": True})
    assert "not both" in both.json["message"]
    neither = client.delete(URL, headers=ALICE, json={"all": False})
    assert "sessionId" in neither.json["message"] and "all" in neither.json["message"]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_delete_without_json_content_type_is_415(client, content_type):
    before = listing(client)
    response = client.delete(URL, headers=ALICE, data='{"all": true}', content_type=content_type)
    assert_error(response, 415, "Unsupported Media Type")
    assert listing(client) == before


def test_oversized_body_is_413(client):
    before = listing(client)
    body = json.dumps({"all": True, "pad": "x" * 100_000})
    response = client.delete(URL, headers=ALICE, data=body, content_type="application/json")
    assert_error(response, 413, "Request Entity Too Large")
    assert listing(client) == before


def test_the_caller_is_checked_before_the_body(client):
    big = "x" * 100_000
    assert_error(client.delete(URL, data="{"), 401, "Unauthorized", "Invalid login session")
    assert_error(client.delete(URL, data=big, content_type="application/json"), 401, "Unauthorized")
    assert_error(client.delete(URL, data="{}", content_type="text/plain"), 401, "Unauthorized")


@pytest.mark.parametrize("path", ["/", "/api", "/api/users", "/api/user/sessions/sess_abc123", "/api/nope"])
def test_unknown_routes_are_404(client, path):
    assert_error(client.get(path, headers=ALICE), 404, "Not Found")


@pytest.mark.parametrize(
    ("method", "path"),
    [("put", URL), ("post", URL), ("patch", URL), ("get", "/api/auth/login"), ("delete", "/api/auth/logout")],
)
def test_wrong_methods_are_405_with_allow(client, method, path):
    response = getattr(client, method)(path, headers=ALICE)
    assert_error(response, 405, "Method Not Allowed")
    assert response.headers["Allow"]


def test_an_unexpected_exception_is_a_json_500_without_a_trace(app, client, monkeypatch):
    # A real fault: the sessions table vanishes under the running app.
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE sessions")
    monkeypatch.setattr(app.logger, "disabled", True)  # every app shares the "app" logger: restored after
    response = client.get(URL, headers=ALICE)
    assert_error(response, 500, "Internal Server Error", "An unexpected error occurred.")
    assert "sessions" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


@pytest.mark.parametrize("headers", [{"Authorization": "tok\x00alice"}, {"Authorization": "Bearer caf\xe9"},
                                     {"Cookie": "zipline_token=cookie\x00abc"}, {"Cookie": "zipline_token=caf\xe9"}])
@pytest.mark.parametrize("method", ["get", "delete"])
def test_odd_credentials_are_only_hashed_and_refused_alike_on_every_database(client, headers, method):
    """A token or cookie is never stored or compared as text (only its SHA-256): NUL or
    latin-1 in one is just a credential that names nobody, on SQLite and PostgreSQL."""
    response = getattr(client, method)(URL, headers=headers, json={"all": True})
    assert_error(response, 401, "Unauthorized", "Invalid login session")
    assert_error(client.post("/api/auth/logout", headers=headers), 401, "Unauthorized", "Invalid login session")
    assert len(listing(client)["other"]) == 2
