"""POST /api/auth/login and GET/POST /api/auth/logout."""

import json

import pytest
from conftest import IPHONE_SAFARI, SEED, assert_error, cookie

from zipline_sessions.fixture import seed_file, seeding
from zipline_sessions.storage.clock import utcnow

LOGIN = "/api/auth/login"
LOGOUT = "/api/auth/logout"
SESSIONS = "/api/user/sessions"
IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.0 Mobile/15E148 Safari/604.1")


def log_in(client, user_agent=IPHONE_SAFARI, username="alice", password="wonderland"):
    return client.post(LOGIN, json={"username": username, "password": password},
                       headers={"User-Agent": user_agent})


def session_cookie(response) -> str:
    header = response.headers["Set-Cookie"]
    return header.split(";", 1)[0].split("=", 1)[1]


def test_login_answers_the_user_and_sets_a_secure_cookie(client):
    response = log_in(client)
    assert response.status_code == 200
    assert response.json == {"user": {"id": 1, "username": "alice"}}
    flags = [part.strip() for part in response.headers["Set-Cookie"].split(";")]
    assert flags[0].startswith("zipline_token=")
    assert "HttpOnly" in flags and "SameSite=Lax" in flags and "Path=/" in flags
    assert "Max-Age=604800" in flags
    assert "Secure" not in flags
    token = session_cookie(response)
    assert len(token) >= 43  # 256 random bits, url-safe base64
    assert token not in response.get_data(as_text=True)


def test_login_records_the_user_agent_as_client_and_device(client):
    token = session_cookie(log_in(client, user_agent=IPAD))
    current = client.get(SESSIONS, headers=cookie(token)).json["current"]
    assert current["ua"] == IPAD
    assert (current["client"], current["device"]) == ("Mobile Safari", "Tablet")
    assert current["id"].startswith("sess_")
    assert current["createdAt"].endswith("Z") and len(current["createdAt"]) == 24


@pytest.mark.parametrize(("user_agent", "client_name", "device"),
                         [("", "Unknown", "Unknown"), ("x" * 5000, "Unknown", "Unknown")])
def test_odd_user_agents_log_in_fine_and_are_bounded(client, user_agent, client_name, device):
    token = session_cookie(log_in(client, user_agent=user_agent))
    current = client.get(SESSIONS, headers=cookie(token)).json["current"]
    assert (current["client"], current["device"]) == (client_name, device)
    assert current["ua"] == user_agent[:1024]


def test_secure_cookie_when_configured(make_app):
    app = make_app(COOKIE_SECURE=True, COOKIE_NAME="sid", TTL_SECONDS=60)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["create-user", "dave", "--password"], input="pw\npw\n").exit_code == 0
    response = log_in(app.test_client(use_cookies=False), username="dave", password="pw")
    flags = [part.strip() for part in response.headers["Set-Cookie"].split(";")]
    assert flags[0].startswith("sid=") and "Secure" in flags and "Max-Age=60" in flags


@pytest.mark.parametrize(("samesite", "secure"), [("Strict", False), ("None", True)])
def test_the_cookie_carries_the_configured_samesite(make_app, samesite, secure):
    app = make_app(COOKIE_SAMESITE=samesite, COOKIE_SECURE=secure)
    assert app.test_cli_runner().invoke(args=["create-user", "dave", "--password"], input="pw\npw\n").exit_code == 0
    client = app.test_client(use_cookies=False)
    login = log_in(client, username="dave", password="pw")
    logout = client.post(LOGOUT, headers=cookie(session_cookie(login)))
    for response in (login, logout):
        flags = [part.strip() for part in response.headers["Set-Cookie"].split(";")]
        assert f"SameSite={samesite}" in flags and ("Secure" in flags) == secure


@pytest.mark.parametrize(("username", "password"),
                         [("alice", "wrong"), ("nobody", "wonderland"), ("bob", "anything"), ("ALICE", "wonderland")])
def test_bad_credentials_get_one_answer(client, username, password):
    response = log_in(client, username=username, password=password)
    assert_error(response, 401, "Unauthorized", "Invalid username or password")
    assert "Set-Cookie" not in response.headers
    assert len(client.get(SESSIONS, headers={"Authorization": "tok-alice"}).json["other"]) == 2


@pytest.mark.parametrize(
    "body",
    [{}, {"username": "alice"}, {"password": "wonderland"}, {"username": 1, "password": "x"},
     {"username": "alice", "password": None}, {"username": "", "password": "x"}, ["alice"]],
)
def test_bad_login_bodies_are_400(client, body):
    assert_error(client.post(LOGIN, json=body), 400, "Bad Request")


@pytest.mark.parametrize("raw", ["{", "[" * 5000 + "]" * 5000, '"alice"'])
def test_unparseable_login_bodies_are_400_with_the_limiter_on(make_app, raw):
    app = make_app(LOGIN_RATE_LIMIT="5 per minute")
    response = app.test_client().post(LOGIN, data=raw, content_type="application/json")
    assert_error(response, 400, "Bad Request")


def test_login_needs_json(client):
    assert_error(client.post(LOGIN, data="username=alice&password=wonderland",
                             content_type="application/x-www-form-urlencoded"), 415, "Unsupported Media Type")


@pytest.mark.parametrize("method", ["get", "post"])
def test_logout_ends_the_session_and_clears_the_cookie(client, method):
    token = session_cookie(log_in(client))
    response = getattr(client, method)(LOGOUT, headers=cookie(token))
    assert response.status_code == 200
    assert response.json == {"loggedOut": True}
    flags = [part.strip() for part in response.headers["Set-Cookie"].split(";")]
    assert flags[0] == "zipline_token=" and "Max-Age=0" in flags
    assert client.get(SESSIONS, headers=cookie(token)).status_code == 401
    assert getattr(client, method)(LOGOUT, headers=cookie(token)).status_code == 401


@pytest.mark.parametrize("headers", [{}, cookie("nope"), cookie("cookie-old"), {"Authorization": "tok-alice"}])
def test_logout_needs_a_live_session_cookie(client, headers):
    assert_error(client.post(LOGOUT, headers=headers), 401, "Unauthorized", "Invalid login session")


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("token", ["nope", "cookie-old"])
def test_logout_with_a_stale_or_unknown_cookie_clears_it(client, method, token):
    response = getattr(client, method)(LOGOUT, headers=cookie(token))
    assert_error(response, 401, "Unauthorized", "Invalid login session")
    flags = [part.strip() for part in response.headers["Set-Cookie"].split(";")]
    assert flags[0] == "zipline_token=" and "Max-Age=0" in flags and "HttpOnly" in flags and "Path=/" in flags


def test_logout_without_a_cookie_sets_none(client):
    assert "Set-Cookie" not in client.post(LOGOUT, headers={"Authorization": "tok-alice"}).headers


def test_head_never_logs_out(client):
    response = client.head(LOGOUT, headers=cookie("cookie-abc"))
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "POST", "OPTIONS"}
    assert "Set-Cookie" not in response.headers
    assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 200
    # Every other GET route still answers HEAD.
    assert client.head(SESSIONS, headers=cookie("cookie-abc")).status_code == 200


ELSEWHERE = "https://evil.example"
CROSS_SITE = {
    "sec-fetch-cross-site": {"Sec-Fetch-Site": "cross-site"},
    "sec-fetch-cross-site-upper-case": {"Sec-Fetch-Site": "Cross-Site"},
    "foreign-origin": {"Origin": ELSEWHERE},
    "foreign-origin-same-origin-claimed": {"Origin": ELSEWHERE, "Sec-Fetch-Site": "same-origin"},
    "opaque-origin": {"Origin": "null"},
    "another-port": {"Origin": "http://localhost:8080"},
    "another-scheme": {"Origin": "https://localhost"},
    "cross-site-without-origin": {"Sec-Fetch-Site": "cross-site", "Referer": "http://app.test/"},
}


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
def test_a_cross_site_logout_is_403_and_changes_nothing(make_seeded_app, method, headers):
    app = make_seeded_app(CORS_ORIGINS="http://app.test")
    client = app.test_client(use_cookies=False)
    response = getattr(client, method)(LOGOUT, headers={**cookie("cookie-abc"), **headers},
                                       base_url="http://localhost")
    assert_error(response, 403, "Forbidden", "Cross-site logout refused")
    assert "Set-Cookie" not in response.headers
    assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 200


SAME_SITE = {
    "no-header": {},
    "same-origin": {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
    "same-origin-default-port-and-case": {"Origin": "HTTP://LocalHost:80"},
    "same-site": {"Sec-Fetch-Site": "same-site"},
    "typed-in": {"Sec-Fetch-Site": "none"},
    "allowed-origin": {"Origin": "http://app.test"},
    "allowed-origin-cross-site": {"Origin": "http://APP.test:80", "Sec-Fetch-Site": "cross-site"},
}


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("headers", SAME_SITE.values(), ids=SAME_SITE.keys())
def test_a_same_site_or_allowed_logout_logs_out(make_seeded_app, method, headers):
    app = make_seeded_app(CORS_ORIGINS="http://app.test, https://other.test")
    client = app.test_client(use_cookies=False)
    response = getattr(client, method)(LOGOUT, headers={**cookie("cookie-abc"), **headers},
                                       base_url="http://localhost")
    assert response.status_code == 200 and response.json == {"loggedOut": True}
    assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 401


@pytest.mark.parametrize(("public_origin", "origin", "status"), [
    ("https://files.example.com", "https://files.example.com", 200),
    ("https://files.example.com", "https://files.example.com:443", 200),
    ("https://files.example.com", "http://localhost", 403),  # the Host no longer decides
    (None, "http://localhost", 200),
])
def test_the_public_origin_is_the_services_own(make_seeded_app, public_origin, origin, status):
    app = make_seeded_app(PUBLIC_ORIGIN=public_origin)
    response = app.test_client(use_cookies=False).post(
        LOGOUT, headers={**cookie("cookie-abc"), "Origin": origin}, base_url="http://localhost")
    assert response.status_code == status


def test_the_own_origin_follows_trusted_proxies(make_seeded_app):
    app = make_seeded_app(TRUSTED_PROXIES=1)
    client = app.test_client(use_cookies=False)
    behind_https = {"X-Forwarded-Proto": "https", "Host": "files.example.com"}
    refused = client.post(LOGOUT, headers={**cookie("cookie-abc"), **behind_https,
                                           "Origin": "http://files.example.com"})
    assert refused.status_code == 403
    accepted = client.post(LOGOUT, headers={**cookie("cookie-abc"), **behind_https,
                                            "Origin": "https://files.example.com"})
    assert accepted.status_code == 200


def test_a_cross_site_logout_is_refused_before_the_cookie_is_looked_at(client):
    response = client.get(LOGOUT, headers={"Sec-Fetch-Site": "cross-site", **cookie("nope")})
    assert_error(response, 403, "Forbidden", "Cross-site logout refused")
    assert "Set-Cookie" not in response.headers


def test_login_and_the_session_routes_are_never_cached(client):
    token = session_cookie(log_in(client))
    answers = {
        "login": log_in(client),
        "login-refused": log_in(client, password="wrong"),
        "login-bad-body": client.post(LOGIN, json={}),
        "list": client.get(SESSIONS, headers=cookie(token)),
        "list-refused": client.get(SESSIONS),
        "revoke": client.delete(SESSIONS, headers=cookie(token), json={"sessionId": "sess_def456"}),
        "revoke-refused": client.delete(SESSIONS, headers=cookie(token), json={}),
        "logout": client.post(LOGOUT, headers=cookie(token)),
        "logout-refused": client.post(LOGOUT, headers=cookie(token)),
        "logout-cross-site": client.get(LOGOUT, headers={"Sec-Fetch-Site": "cross-site"}),
        "health": client.get("/api/health"),
        "openapi": client.get("/api/openapi.json"),
        "unknown-route": client.get("/api/nowhere"),
        "not-a-static-file": client.get("/static/app.js"),  # no static files are served
    }
    assert {name: answer.headers.get("Cache-Control") for name, answer in answers.items()} == {
        name: "no-store" for name in answers}


def test_a_login_from_a_browser_with_a_live_session_of_the_same_user_ends_it(client, security_events):
    first = session_cookie(log_in(client))
    second = session_cookie(client.post(LOGIN, json={"username": "alice", "password": "wonderland"},
                                        headers={"User-Agent": IPHONE_SAFARI, **cookie(first)}))
    assert client.get(SESSIONS, headers=cookie(first)).status_code == 401
    listing = client.get(SESSIONS, headers=cookie(second)).json
    assert len(listing["other"]) == 2  # the two seeded sessions; the first login's is gone
    rotated = [event for event in security_events if event["event"] == "login.rotated"]
    assert len(rotated) == 1 and rotated[0]["sessionId"] == listing["current"]["id"]
    assert rotated[0]["ended"].startswith("sess_") and rotated[0]["ended"] not in str(listing)


@pytest.mark.parametrize("token", ["cookie-bob", "cookie-old", "nope"])  # another user's, expired, unknown
def test_a_login_ends_no_session_of_another_user_and_rotates_nothing_dead(client, security_events, token):
    assert client.post(LOGIN, json={"username": "alice", "password": "wonderland"},
                       headers=cookie(token)).status_code == 200
    assert client.get(SESSIONS, headers=cookie("cookie-bob")).status_code == 200
    assert len(client.get(SESSIONS, headers={"Authorization": "tok-alice"}).json["other"]) == 3
    assert not [event for event in security_events if event["event"] == "login.rotated"]


def test_a_failed_login_ends_no_session(client):
    assert log_in(client, password="wrong").status_code == 401
    response = client.post(LOGIN, json={"username": "alice", "password": "wrong"}, headers=cookie("cookie-abc"))
    assert response.status_code == 401
    assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 200


NUL_LOGINS = {
    "username": ({"username": "ali\u0000ce", "password": "wonderland"}, "username: Must not contain a NUL character."),
    "password": ({"username": "alice", "password": "wonder\u0000land"}, "password: Must not contain a NUL character."),
    # orjson refuses a lone surrogate while parsing: 400 all the same.
    "username-surrogate": ({"username": "\ud800", "password": "x"}, "Request body is not valid JSON."),
}


@pytest.mark.parametrize(("body", "message"), NUL_LOGINS.values(), ids=NUL_LOGINS.keys())
def test_a_nul_or_a_lone_surrogate_in_a_login_is_400_on_every_database(client, body, message):
    response = client.post(LOGIN, data=json.dumps(body), content_type="application/json")
    assert_error(response, 400, "Bad Request", message)
    assert "Set-Cookie" not in response.headers


def test_a_login_beyond_the_cap_ends_the_oldest_live_sessions(make_app, security_events):
    app = make_app(MAX_PER_USER=3)
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed(SEED, 3600, utcnow()))  # alice: two live sessions, one expired
    client = app.test_client(use_cookies=False)
    first = session_cookie(log_in(client))
    assert len(client.get(SESSIONS, headers=cookie(first)).json["other"]) == 2  # 3 live: at the cap
    second = session_cookie(log_in(client))
    listed = client.get(SESSIONS, headers=cookie(second)).json
    assert [row["id"] for row in listed["other"]] == ["sess_abc123", listed_id(client, first)]
    assert client.get(SESSIONS, headers=cookie("cookie-def")).status_code == 401  # the oldest, ended
    capped = [event for event in security_events if event["event"] == "sessions.capped"]
    assert capped == [{**capped[0], "user": "alice", "userId": 1, "limit": 3, "ended": ["sess_def456"]}]
    log_in(client)
    assert client.get(SESSIONS, headers=cookie("cookie-abc")).status_code == 401
    assert client.get(SESSIONS, headers=cookie(first)).status_code == 200
    assert client.get(SESSIONS, headers=cookie("cookie-bob")).status_code == 200  # other users untouched


def listed_id(client, token: str) -> str:
    return client.get(SESSIONS, headers=cookie(token)).json["current"]["id"]


def test_a_cap_of_one_keeps_only_the_new_session(make_app):
    app = make_app(MAX_PER_USER=1)
    with app.app_context():
        seeding.store_seed(seed_file.parse_seed({"users": [{"username": "ann", "password": "pw"}]}, 3600, utcnow()))
    client = app.test_client(use_cookies=False)
    tokens = [session_cookie(log_in(client, username="ann", password="pw")) for _ in range(3)]
    assert [client.get(SESSIONS, headers=cookie(token)).status_code for token in tokens] == [401, 401, 200]
