"""CORS for browser clients (SESSIONS_CORS_ORIGINS): preflights, credentials, errors, and no one else."""

import contextlib
import http.server
import json
import os

import pytest
from conftest import SEED, cookie
from live_server import LiveServer, loopback_http_server

from database import db

SESSIONS = "/api/user/sessions"
LOGIN = "/api/auth/login"
FRONTEND = "http://localhost:5173"
ORIGINS = f"{FRONTEND}, https://app.example.com"


@pytest.fixture
def cors_client(make_seeded_app):
    app = make_seeded_app(CORS_ORIGINS=ORIGINS)
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
    assert not [name for name, _ in response.headers.items() if name.lower().startswith("access-control-")]


@pytest.mark.parametrize(("path", "method"), [(SESSIONS, "DELETE"), (LOGIN, "POST"), ("/api/auth/logout", "POST"),
                                              ("/api/user", "PATCH"), ("/api/user/token", "PATCH")])
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
    assert None not in plain.after_request_funcs  # no app-wide hook (blueprints may have their own)
    assert "handle_user_exception" not in vars(plain)
    assert with_cors.after_request_funcs[None] and "handle_user_exception" in vars(with_cors)
    response = plain.test_client().get(SESSIONS, headers={"Origin": FRONTEND})
    assert_no_cors(response)
    assert "Vary" not in response.headers


# --- In a real browser: headless Chromium, a page on another port, the real server. ---

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE = b"<!doctype html><title>frontend</title><p>a frontend under development</p>"
# What a frontend does, in the page: every call a fetch with the browser's cookies.
SCRIPT = """async ([api, step]) => {
  const call = async (method, path, body) => {
    const init = {method, credentials: "include", headers: {}};
    if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
    const response = await fetch(api + path, init);
    return {status: response.status, body: await response.json()};
  };
  const login = {username: "alice", password: "wonderland"};
  if (step === "login") return await call("POST", "/api/auth/login", login);
  if (step === "list") return await call("GET", "/api/user/sessions");
  if (step === "revoke-others") return await call("DELETE", "/api/user/sessions", {all: true});
  if (step === "logout") return await call("POST", "/api/auth/logout");
  if (step === "blocked") {
    try { await call("GET", "/api/user/sessions"); return "answered"; }
    catch (error) { return error.name; }
  }
}"""


@contextlib.contextmanager
def page_server():
    """A static page on its own loopback port: the frontend's dev server."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(PAGE)

        def log_message(self, *args):
            pass

    with loopback_http_server(Page) as port:
        yield f"http://localhost:{port}"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
def test_a_page_on_another_port_logs_in_lists_revokes_and_logs_out(tmp_path, database_url):
    from playwright.sync_api import sync_playwright

    with page_server() as frontend, page_server() as stranger:
        server = LiveServer(tmp_path, database_url, SEED, workers=2, env={"SESSIONS_CORS_ORIGINS": frontend}).start()
        # localhost -> localhost on another port is same-site: the Lax cookie goes along.
        api = f"http://localhost:{server.port}"
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    laptop, phone = (browser.new_context().new_page() for _ in range(2))
                    for page in (laptop, phone):
                        page.goto(frontend)

                    def step(page, name):
                        return page.evaluate(SCRIPT, [api, name])

                    assert step(laptop, "login") == {"status": 200, "body": {"user": {"id": 1, "username": "alice"}}}
                    assert step(phone, "login")["status"] == 200
                    listed = step(laptop, "list")
                    assert listed["status"] == 200 and listed["body"]["current"]["client"] == "HeadlessChrome"
                    mine = listed["body"]["current"]["id"]
                    phones = [s["id"] for s in listed["body"]["other"] if s["id"] not in ("sess_abc123", "sess_def456")]
                    assert len(phones) == 1  # the phone's login, besides the two seeded sessions

                    revoked = step(laptop, "revoke-others")
                    assert revoked["status"] == 200
                    assert revoked["body"]["current"]["id"] == mine and revoked["body"]["other"] == []
                    assert step(laptop, "list")["body"]["other"] == []
                    assert step(phone, "list") == {"status": 401, "body": {
                        "statusCode": 401, "error": "Unauthorized", "message": "Invalid login session"}}

                    assert step(laptop, "logout") == {"status": 200, "body": {"loggedOut": True}}
                    assert step(laptop, "list")["status"] == 401

                    # A page from an origin not listed: the browser withholds the answer.
                    outsider = browser.new_context().new_page()
                    outsider.goto(stranger)
                    assert outsider.evaluate(SCRIPT, [api, "blocked"]) == "TypeError"

                    # localhost -> 127.0.0.1 is cross-site: CORS lets the answers through, but the
                    # browser keeps the Lax cookie out, so the login does not stick (README, SameSite).
                    elsewhere = browser.new_context().new_page()
                    elsewhere.goto(frontend)
                    numeric = [f"http://127.0.0.1:{server.port}"]
                    assert elsewhere.evaluate(SCRIPT, [*numeric, "login"])["status"] == 200
                    assert elsewhere.evaluate(SCRIPT, [*numeric, "list"])["status"] == 401
                finally:
                    browser.close()
        finally:
            server.stop()
