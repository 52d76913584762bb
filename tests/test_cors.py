"""CORS for browser clients (SESSIONS_CORS_ORIGINS): preflights, credentials, errors, and no one else."""

import json

import pytest
from conftest import SEED, cookie

import seed
from database import db
from models import utcnow

SESSIONS = "/api/user/sessions"
LOGIN = "/api/auth/login"
FRONTEND = "http://localhost:5173"
ORIGINS = f"{FRONTEND}, https://app.example.com"


@pytest.fixture
def cors_client(make_app):
    app = make_app(CORS_ORIGINS=ORIGINS)
    with app.app_context():
        seed.store_seed(seed.parse_seed(SEED, app.config["TTL_SECONDS"], utcnow()))
    return app.test_client(use_cookies=False)


def preflight(client, path, method, origin=FRONTEND, headers="content-type"):
    request_headers = {"Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}
    if origin is not None:
        request_headers["Origin"] = origin
    return client.options(path, headers=request_headers)


def assert_allowed(response, origin=FRONTEND):
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in response.headers.get("Vary", "")


def assert_no_cors(response):
    assert not [name for name in response.headers.keys() if name.lower().startswith("access-control-")]


@pytest.mark.parametrize(("path", "method"), [(SESSIONS, "DELETE"), (LOGIN, "POST"), ("/api/auth/logout", "POST")])
def test_preflights_for_json_writes_are_answered(cors_client, path, method):
    response = preflight(cors_client, path, method, headers="content-type, authorization")
    assert 200 <= response.status_code < 300
    assert_allowed(response)
    assert method in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"content-type", "authorization"}


def test_the_actual_response_names_the_origin_and_allows_credentials(cors_client):
    response = cors_client.get(SESSIONS, headers={"Origin": FRONTEND, **cookie("cookie-abc")})
    assert response.status_code == 200 and response.json["current"]["id"] == "sess_abc123"
    assert_allowed(response)
    other = cors_client.get(SESSIONS, headers={"Origin": "https://app.example.com", **cookie("cookie-abc")})
    assert_allowed(other, "https://app.example.com")


@pytest.mark.parametrize("origin", [None, "http://localhost:5174", "http://evil.example", "http://localhost:5173.evil",
                                    "null"])
def test_other_origins_and_no_origin_get_no_cors_headers(cors_client, origin):
    headers = {"Origin": origin} if origin else {}
    response = cors_client.get(SESSIONS, headers={**headers, **cookie("cookie-abc")})
    assert response.status_code == 200
    assert_no_cors(response)
    assert "Origin" in response.headers["Vary"]  # a cache must not hand this answer to the listed origin
    assert_no_cors(preflight(cors_client, SESSIONS, "DELETE", origin=origin))


def test_error_responses_carry_the_cors_headers(cors_client, make_app):
    origin = {"Origin": FRONTEND}
    alice = {**origin, "Authorization": "tok-alice"}
    errors = {
        400: cors_client.delete(SESSIONS, headers=alice, json={}),
        401: cors_client.get(SESSIONS, headers=origin),
        404: cors_client.get("/api/nowhere", headers=origin),
        405: cors_client.put(SESSIONS, headers=origin),
        413: cors_client.delete(SESSIONS, headers=alice, data=json.dumps({"pad": "x" * 100_000}),
                                content_type="application/json"),
        415: cors_client.delete(SESSIONS, headers=alice, data="{}", content_type="text/plain"),
    }
    limited = make_app(CORS_ORIGINS=FRONTEND, LOGIN_RATE_LIMIT="1 per minute").test_client()
    for _ in range(2):
        errors[429] = limited.post(LOGIN, headers=origin, json={"username": "x", "password": "y"})
    for status, response in errors.items():
        assert response.status_code == status
        assert response.json["statusCode"] == status
        assert_allowed(response)


def test_an_unexpected_fault_carries_the_cors_headers_too(make_app):
    app = make_app(CORS_ORIGINS=FRONTEND)
    with app.app_context(), db.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE sessions")
    app.logger.disabled = True
    response = app.test_client().get(SESSIONS, headers={"Origin": FRONTEND, "Authorization": "tok-alice"})
    assert response.status_code == 500
    assert_allowed(response)


def test_only_the_api_gets_cors_headers(cors_client):
    response = cors_client.get("/favicon.ico", headers={"Origin": FRONTEND})
    assert response.status_code == 404
    assert_no_cors(response)
    assert "Vary" not in response.headers


def test_without_origins_nothing_is_installed(make_app):
    plain = make_app()
    with_cors = make_app(CORS_ORIGINS=FRONTEND)
    # Flask-CORS adds an after_request hook and wraps the exception handlers; with no origins
    # configured none of that exists, so no request pays for it.
    assert plain.after_request_funcs == {}
    assert "handle_user_exception" not in vars(plain)
    assert with_cors.after_request_funcs[None] and "handle_user_exception" in vars(with_cors)
    response = plain.test_client().get(SESSIONS, headers={"Origin": FRONTEND})
    assert_no_cors(response)
    assert "Vary" not in response.headers
