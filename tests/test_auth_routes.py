"""POST /api/auth/login and GET/POST /api/auth/logout."""

import pytest
from conftest import IPHONE_SAFARI, SEED, cookie
from test_errors import assert_error

import seed
from models import utcnow

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


def test_a_login_beyond_the_cap_ends_the_oldest_live_sessions(make_app, security_events):
    app = make_app(MAX_PER_USER=3)
    with app.app_context():
        seed.store_seed(seed.parse_seed(SEED, 3600, utcnow()))  # alice: two live sessions, one expired
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
        seed.store_seed(seed.parse_seed({"users": [{"username": "ann", "password": "pw"}]}, 3600, utcnow()))
    client = app.test_client(use_cookies=False)
    tokens = [session_cookie(log_in(client, username="ann", password="pw")) for _ in range(3)]
    assert [client.get(SESSIONS, headers=cookie(token)).status_code for token in tokens] == [401, 401, 200]
