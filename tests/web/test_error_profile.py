"""SESSIONS_ERROR_PROFILE: every error in the contract's shape (default) or in Zipline v4's."""

import json

import pytest
from conftest import SEED, cookie
from live_server import LiveServer

from zipline_sessions.storage.database import db

SESSIONS = "/api/user/sessions"
LOGIN = "/api/auth/login"
ALICE = {"Authorization": "tok-alice", **cookie("cookie-abc")}


def seeded_client(make_seeded_app, **config):
    app = make_seeded_app(**config)
    app.logger.disabled = True  # the 500 below is logged on purpose
    return app, app.test_client(use_cookies=False)


def every_error(app, client) -> dict:
    """One response of each error status the service gives."""
    responses = {
        "current": client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_abc123"}),
        "not-found": client.delete(SESSIONS, headers=ALICE, json={"sessionId": "sess_nope"}),
        "neither": client.delete(SESSIONS, headers=ALICE, json={}),
        "not-json": client.delete(SESSIONS, headers=ALICE, data="{", content_type="application/json"),
        "no-caller": client.get(SESSIONS),
        "bad-login": client.post(LOGIN, json={"username": "alice", "password": "wrong"}),
        "no-route": client.get("/api/nowhere"),
        "method": client.put(SESSIONS),
        "too-large": client.delete(SESSIONS, headers=ALICE, data=json.dumps({"pad": "x" * 100_000}),
                                   content_type="application/json"),
        "media-type": client.delete(SESSIONS, headers=ALICE, data="{}", content_type="text/plain"),
    }
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE sessions")
    responses["fault"] = client.get(SESSIONS, headers=ALICE)
    return responses


ZIPLINE_V4 = {
    "current": (400, (b'{"error":"E1021: Cannot delete current session, use log out instead.","code":1021,'
                     b'"statusCode":400}\n')),
    "not-found": (400, b'{"error":"E1031: Session not found in logged in sessions","code":1031,"statusCode":400}\n'),
    "neither": (400, b'{"error":"E1000: Provide either sessionId or all: true.","code":1000,"statusCode":400}\n'),
    "not-json": (400, b'{"error":"E1000: Request body is not valid JSON.","code":1000,"statusCode":400}\n'),
    "no-caller": (401, b'{"error":"E2000: Invalid login session","code":2000,"statusCode":401}\n'),
    "bad-login": (401, b'{"error":"E1044: Invalid username or password","code":1044,"statusCode":401}\n'),
    "no-route": (404, b'{"error":"E9002: Not found","code":9002,"statusCode":404}\n'),
    "method": (405, b'{"error":"E9000: Method Not Allowed","code":9000,"statusCode":405}\n'),
    "too-large": (413, b'{"error":"E9000: Request Entity Too Large","code":9000,"statusCode":413}\n'),
    "media-type": (415, (b'{"error":"E9000: Content-Type must be application/json.","code":9000,'
                        b'"statusCode":415}\n')),
    "fault": (500, b'{"error":"E9004: An unexpected error occurred.","code":9004,"statusCode":500}\n'),
}


def test_zipline_v4_profile_sends_zipline_bodies_byte_for_byte(make_seeded_app):
    app, client = seeded_client(make_seeded_app, ERROR_PROFILE="zipline-v4")
    responses = every_error(app, client)
    assert set(responses) == set(ZIPLINE_V4)
    for name, response in responses.items():
        status, body = ZIPLINE_V4[name]
        assert (name, response.status_code, response.get_data()) == (name, status, body)
        assert response.content_type == "application/json"
    assert responses["method"].headers["Allow"]  # headers an error carries are kept


def test_zipline_v4_profile_keeps_retry_after_on_429(make_seeded_app):
    _, client = seeded_client(make_seeded_app, ERROR_PROFILE="zipline-v4", LOGIN_RATE_LIMIT="1 per minute")
    for _ in range(2):
        response = client.post(LOGIN, json={"username": "alice", "password": "wrong"})
    assert response.status_code == 429 and response.headers["Retry-After"]
    assert response.get_data() == (b'{"error":"E9000: Too many login attempts, try again later.","code":9000,'
                                   b'"statusCode":429}\n')


def test_the_default_profile_is_the_contracts_byte_for_byte(make_seeded_app):
    app, client = seeded_client(make_seeded_app)
    responses = every_error(app, client)
    for name, response in responses.items():
        status = ZIPLINE_V4[name][0]
        body = response.json
        assert response.status_code == status
        assert list(body) == ["statusCode", "error", "message"]
        expected = json.dumps({"statusCode": status, "error": body["error"], "message": body["message"]},
                              separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        assert response.get_data() == expected
    assert responses["current"].get_data() == (b'{"statusCode":400,"error":"Bad Request",'
                                               b'"message":"Cannot delete current session, use log out instead."}\n')
    assert responses["not-found"].get_data() == (b'{"statusCode":400,"error":"Bad Request",'
                                                 b'"message":"Session not found in logged in sessions"}\n')


def test_the_openapi_document_follows_the_profile(make_app):
    from openapi_spec_validator import validate

    for profile, schema, required in (("contract", "Error", ["error", "message", "statusCode"]),
                                      ("zipline-v4", "ZiplineError", ["code", "error", "statusCode"])):
        document = make_app(ERROR_PROFILE=profile).test_client().get("/api/openapi.json").json
        validate(document)
        schemas = document["components"]["schemas"]
        assert schemas[schema]["required"] == required
        assert ({"Error", "ZiplineError"} - {schema}).isdisjoint(schemas)  # only the shape in use
        refs = {response["content"]["application/json"]["schema"]["$ref"]
                for operations in document["paths"].values() for operation in operations.values()
                for status, response in operation["responses"].items() if status >= "400"}
        assert refs == {f"#/components/schemas/{schema}"}


@pytest.mark.parametrize("profile", ["contract", "zipline-v4"])
def test_a_real_server_with_two_workers_answers_in_its_profile(tmp_path, database_url, profile):
    server = LiveServer(tmp_path, database_url, SEED, workers=2, env={"SESSIONS_ERROR_PROFILE": profile}).start()
    try:
        for _ in range(4):  # more than one worker answers
            status, headers, body = server.request("DELETE", SESSIONS, ALICE, {"sessionId": "sess_nope"})
            assert status == 400 and headers["Content-Type"] == "application/json"
            assert body == ({"statusCode": 400, "error": "Bad Request", "message": "Session not found in logged in sessions"}
                            if profile == "contract" else
                            {"error": "E1031: Session not found in logged in sessions", "code": 1031, "statusCode": 400})
    finally:
        server.stop()
