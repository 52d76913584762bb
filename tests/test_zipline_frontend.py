"""Zipline's own frontend, replayed request for request against a real server, in both profiles.

Each request is what the frontend's code sends (diced/zipline, README "Zipline compatibility"):
fetchApi (src/lib/fetchApi.ts) sets Content-Type: application/json only when it sends a body and
passes no credentials option, so the browser sends the cookie because the page is same-origin,
with an Origin header on every method but GET and HEAD; SWR's fetcher is a plain fetch(url). Each
check is what that code reads of the answer: res.ok, a JSON body, and on an error `error` and
`code` (fetchApi reads an error as JSON only when its Content-Type says so).
"""

import http.client
import json

import pytest
from conftest import SEED
from live_server import LiveServer

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
IPHONE = SEED["users"][0]["sessions"][1]["ua"]
BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class Browser:
    """One browser tab on the server's origin: a cookie jar and the frontend's two ways of calling."""

    def __init__(self, server: LiveServer, user_agent: str = CHROME):
        self.server, self.user_agent, self.cookies = server, user_agent, {}

    def fetch_api(self, route: str, method: str = "GET", body=None, headers: dict | None = None):
        """fetchApi(route, method, body, headers): (data, error), one of them None."""
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/json"
        status, answer_headers, raw = self.send(method, route, sent, None if body is None else json.dumps(body))
        if 200 <= status < 300:
            return json.loads(raw), None
        assert answer_headers["Content-Type"].startswith("application/json"), (route, status)
        return None, json.loads(raw) | {"status": status}

    def swr(self, route: str):
        """SWR's fetcher, fetch(url): the status and the JSON body (the fetcher parses it either way)."""
        status, _, raw = self.send("GET", route, {}, None)
        return status, json.loads(raw)

    def send(self, method: str, route: str, headers: dict, payload: str | None):
        headers = {"User-Agent": self.user_agent, "Accept": "*/*",
                   "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", **headers}
        if method in BODY_METHODS:
            headers["Origin"] = self.server.base_url  # browsers send it on every same-origin write
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=60)
        try:
            connection.request(method, route, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            for line in response.headers.get_all("Set-Cookie") or []:
                self.store_cookie(line)
            return response.status, response.headers, raw
        finally:
            connection.close()

    def store_cookie(self, line: str) -> None:
        name, _, rest = line.partition("=")
        value, *attributes = rest.split(";")
        if value == "" or any(a.strip().lower() == "max-age=0" for a in attributes):
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value


def log_in(browser: Browser, username: str, password: str):
    """The login page's submit: fetchApi('/api/auth/login', 'POST', {...values, code}, {'x-zipline-client': ...})."""
    return browser.fetch_api("/api/auth/login", "POST", {"username": username, "password": password},
                             {"x-zipline-client": "web"})


@pytest.fixture(params=["contract", "zipline-v4"])
def server(request, tmp_path, database_url):
    live = LiveServer(tmp_path, database_url, SEED, workers=2, env={"SESSIONS_ERROR_PROFILE": request.param}).start()
    live.profile = request.param
    live.cookie_name = "zipline_session" if request.param == "zipline-v4" else "zipline_token"
    yield live
    live.stop()


def failed_login(server, error) -> None:
    if server.profile == "zipline-v4":  # the login page marks both fields on ApiError.check(error, 1044)
        assert (error["status"], error["code"], error["error"]) == (400, 1044, "E1044: Invalid username or password")
    else:
        assert (error["status"], error["message"]) == (401, "Invalid username or password")


def test_the_login_page(server):
    browser = Browser(server)
    status, _ = browser.swr("/api/user")  # useLogin: not logged in yet, so the page stays
    assert status == 401
    for username, password in (("alice", "not her password"), ("nobody", "wonderland")):
        data, error = log_in(browser, username, password)
        assert data is None
        failed_login(server, error)
        assert browser.cookies == {}
    data, error = log_in(browser, "alice", "wonderland")
    assert error is None and "totp" not in data
    assert list(browser.cookies) == [server.cookie_name]
    status, who = browser.swr("/api/user")  # mutate(data) put {user} there; the next read agrees
    assert status == 200 and who == data
    assert who["user"]["username"] == "alice"
    assert who["user"]["id"] == ("1" if server.profile == "zipline-v4" else 1)


def test_the_sessions_page(server):
    laptop, phone, tablet = Browser(server), Browser(server, IPHONE), Browser(server, IPHONE)
    for browser in (laptop, phone, tablet):
        assert log_in(browser, "alice", "wonderland")[1] is None
    phone_id = phone.swr("/api/user/sessions")[1]["current"]["id"]
    status, listing = laptop.swr("/api/user/sessions")  # SettingsSessions reads other[].id, client, device, createdAt
    assert status == 200
    others = listing["other"]
    assert len(others) == 4  # the phone, the tablet and the two seeded sessions
    assert all({"id", "client", "device", "createdAt"} <= set(session) for session in others)
    assert next(s for s in others if s["id"] == phone_id)["client"] == "Mobile Safari"
    data, error = laptop.fetch_api("/api/user/sessions", "DELETE", {"sessionId": phone_id})  # sign out one
    assert error is None and phone_id not in [s["id"] for s in data["other"]]
    assert phone.swr("/api/user/sessions")[0] == 401
    assert tablet.swr("/api/user/sessions")[0] == 200
    data, error = laptop.fetch_api("/api/user/sessions", "DELETE", {"all": True})  # sign out all
    assert error is None and data["other"] == []
    assert tablet.swr("/api/user/sessions")[0] == 401
    status, listing = laptop.swr("/api/user/sessions")  # mutate() reads the list again
    assert status == 200 and listing["other"] == [] and listing["current"] is not None


def test_the_logout_page(server):
    browser = Browser(server)
    log_in(browser, "alice", "wonderland")
    stolen = dict(browser.cookies)
    status, who = browser.swr("/api/user")  # the logout page asks who is logged in first
    assert status == 200 and who["user"]["username"] == "alice"
    status, _, raw = browser.send("GET", "/api/auth/logout", {}, None)  # useLogout: a plain fetch
    assert (status, json.loads(raw)) == (200, {"loggedOut": True})
    assert browser.cookies == {}  # cleared
    assert browser.swr("/api/user")[0] == 401  # the login page's useLogin now finds no one
    thief = Browser(server)
    thief.cookies = stolen
    status, error = thief.swr("/api/user")
    assert status == 401
    if server.profile == "zipline-v4":  # a stale cookie: Zipline's middleware says 2001
        assert error["code"] == 2001


def test_the_token_button(server):
    browser = Browser(server)
    log_in(browser, "alice", "wonderland")
    data, error = browser.fetch_api("/api/user/token", "PATCH")  # Layout's "refresh token": no body
    if server.profile == "zipline-v4":
        assert error is None and data["user"]["username"] == "alice" and len(data["token"]) >= 43
        token = data["token"]
    else:  # the contract's profile asks a cookie for the current password too
        assert (error["status"], error["message"]) == (400, "Current password is required to reset the API token")
        data, error = browser.fetch_api("/api/user/token", "PATCH", {"currentPassword": "wonderland"})
        assert error is None
        token = data["token"]
    assert server.request("GET", "/api/user/sessions", {"Authorization": "tok-alice"})[0] == 401
    assert server.request("GET", "/api/user/sessions", {"Authorization": token})[0] == 200
    assert browser.swr("/api/user")[0] == 200  # the session goes on


def test_the_user_settings(server):
    browser, phone = Browser(server), Browser(server, IPHONE)
    log_in(browser, "alice", "wonderland")
    log_in(phone, "alice", "wonderland")
    data, error = browser.fetch_api("/api/user", "PATCH", {})  # saved with nothing changed
    if server.profile == "zipline-v4":
        assert error is None and data["user"]["username"] == "alice"
    else:
        assert error["status"] == 400
    data, error = browser.fetch_api("/api/user", "PATCH", {"username": "bob"})
    assert data is None and error["status"] == 400
    if server.profile == "zipline-v4":
        assert (error["code"], error["error"]) == (1038, "E1038: Username already exists")
    data, error = browser.fetch_api("/api/user", "PATCH", {"username": "alice.liddell"})  # a rename
    assert error is None and data["user"]["username"] == "alice.liddell"
    assert phone.swr("/api/user")[1]["user"]["username"] == "alice.liddell"  # no session ended
    for current, code in (("", 1067), ("not it", 1066)):
        data, error = browser.fetch_api("/api/user", "PATCH", {"password": "a new passphrase",
                                                               "currentPassword": current})
        assert data is None and error["status"] == 400
        if server.profile == "zipline-v4":  # shown under the current password field
            assert error["code"] == code
    before = dict(browser.cookies)
    data, error = browser.fetch_api("/api/user", "PATCH", {"password": "a new passphrase",
                                                           "currentPassword": "wonderland"})
    assert error is None and data["user"]["username"] == "alice.liddell"
    assert browser.cookies != before  # a fresh Set-Cookie
    assert browser.swr("/api/user")[0] == 200  # the settings page's mutate('/api/user')
    assert phone.swr("/api/user")[0] == 401  # every other session ended
    old = Browser(server)
    old.cookies = before
    assert old.swr("/api/user")[0] == 401  # the old cookie value is refused
    assert log_in(Browser(server), "alice.liddell", "a new passphrase")[1] is None
