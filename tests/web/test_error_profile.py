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
    alice = {"Authorization": "tok-alice", "Cookie": f"{app.config['COOKIE_NAME']}=cookie-abc"}
    responses = {
        "current": client.delete(SESSIONS, headers=alice, json={"sessionId": "sess_abc123"}),
        "not-found": client.delete(SESSIONS, headers=alice, json={"sessionId": "sess_nope"}),
        "neither": client.delete(SESSIONS, headers=alice, json={}),
        "not-json": client.delete(SESSIONS, headers=alice, data="{", content_type="application/json"),
        "no-caller": client.get(SESSIONS),
        "bad-login": client.post(LOGIN, json={"username": "alice", "password": "wrong"}),
        "no-route": client.get("/api/nowhere"),
        "method": client.put(SESSIONS),
        "too-large": client.delete(SESSIONS, headers=alice, data=json.dumps({"pad": "x" * 100_000}),
                                   content_type="application/json"),
        "media-type": client.delete(SESSIONS, headers=alice, data="{}", content_type="text/plain"),
    }
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE sessions")
    responses["fault"] = client.get(SESSIONS, headers=alice)
    return responses


ZIPLINE_V4 = {
    "current": (400, (b'{"error":"E1021: Cannot delete current session, use log out instead.","code":1021,'
                     b'"statusCode":400}\n')),
    "not-found": (400, b'{"error":"E1031: Session not found in logged in sessions","code":1031,"statusCode":400}\n'),
    "neither": (400, b'{"error":"E1031: Session not found in logged in sessions","code":1031,"statusCode":400}\n'),
    "not-json": (400, b'{"error":"E1000: Request body is not valid JSON.","code":1000,"statusCode":400}\n'),
    "no-caller": (401, b'{"error":"E2000: Invalid login session","code":2000,"statusCode":401}\n'),
    "bad-login": (400, b'{"error":"E1044: Invalid username or password","code":1044,"statusCode":400}\n'),
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


# Where the contract's profile answers another status than Zipline does.
CONTRACT_STATUS = {"bad-login": 401}


def test_the_default_profile_is_the_contracts_byte_for_byte(make_seeded_app):
    app, client = seeded_client(make_seeded_app)
    responses = every_error(app, client)
    for name, response in responses.items():
        status = CONTRACT_STATUS.get(name, ZIPLINE_V4[name][0])
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


def zipline_cookie(token: str) -> dict:
    return {"Cookie": f"zipline_session={token}"}


UNCREDITED = [
    ({}, 2000, "Invalid login session"),  # nothing presented
    (zipline_cookie("cookie-old"), 2001, "Invalid token"),  # expired
    (zipline_cookie("revoked"), 2001, "Invalid token"),  # names no session (revoked, logged out, made up)
    ({"Authorization": "wrong"}, 2001, "Invalid token"),
    ({"Authorization": "wrong", **zipline_cookie("cookie-abc")}, 2001, "Invalid token"),
]


@pytest.mark.parametrize(("path", "headers", "code", "message"), [
    (path, *case) for path in (SESSIONS, "/api/user", "/api/auth/logout") for case in UNCREDITED
    if path != "/api/auth/logout" or "Authorization" not in case[0]])  # logout reads the cookie only
def test_zipline_v4_tells_no_credential_from_a_stale_one_as_its_middleware_does(make_seeded_app, path, headers,
                                                                                code, message):
    _, client = seeded_client(make_seeded_app, ERROR_PROFILE="zipline-v4")
    response = client.get(path, headers=headers)
    assert (response.status_code, response.get_data()) == (
        401, f'{{"error":"E{code}: {message}","code":{code},"statusCode":401}}\n'.encode())


@pytest.mark.parametrize("body", [{}, {"all": False}, {"sessionId": ""}, {"sessionId": "x" * 300}])
def test_zipline_v4_answers_a_revocation_that_names_nothing_as_not_found(make_seeded_app, body):
    _, client = seeded_client(make_seeded_app, ERROR_PROFILE="zipline-v4")
    response = client.delete(SESSIONS, headers=zipline_cookie("cookie-abc"), json=body)
    assert (response.status_code, response.json["code"]) == (400, 1031)
    assert client.get(SESSIONS, headers=zipline_cookie("cookie-abc")).json["other"]  # nothing revoked


@pytest.mark.parametrize(("profile", "setting", "name"), [("contract", None, "zipline_token"),
                                                          ("zipline-v4", None, "zipline_session"),
                                                          ("zipline-v4", "sid", "sid"), ("contract", "sid", "sid")])
def test_the_cookie_is_named_by_the_profile_unless_set(make_seeded_app, profile, setting, name):
    config = {"ERROR_PROFILE": profile, **({"COOKIE_NAME": setting} if setting else {})}
    _, client = seeded_client(make_seeded_app, **config)
    response = client.post(LOGIN, json={"username": "alice", "password": "wonderland"})
    assert response.headers["Set-Cookie"].startswith(f"{name}=")
    assert "HttpOnly" in response.headers["Set-Cookie"] and "SameSite=Lax" in response.headers["Set-Cookie"]
    assert client.get(SESSIONS, headers={"Cookie": f"{name}=cookie-abc"}).status_code == 200
    other = "zipline_token" if name != "zipline_token" else "zipline_session"
    assert client.get(SESSIONS, headers={"Cookie": f"{other}=cookie-abc"}).status_code == 401
