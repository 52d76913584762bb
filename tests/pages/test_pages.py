"""The pages under /auth/ through the app: what each answers, what it changes, and what it refuses."""

import re
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import assert_error, cookie
from sqlalchemy import update

import models
from zipline_sessions.pages.redirects import safe_redirect
from zipline_sessions.pages.secret import ServiceSecret
from zipline_sessions.storage.database import db

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
PAGE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


@pytest.fixture
def browser(app):
    """A test client that keeps cookies, as a browser does."""
    return app.test_client()


def token_of(response) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True)).group(1)


def sign_in(browser, username="alice", password="wonderland", rd=None, headers=None):
    form = browser.get("/auth/login")
    data = {"csrf_token": token_of(form), "username": username, "password": password}
    if rd is not None:
        data["rd"] = rd
    return browser.post("/auth/login", data=data, headers={"User-Agent": BROWSER, **(headers or {})})


def listed(client, token="tok-alice") -> list[str]:
    response = client.get("/api/user/sessions", headers={"Authorization": token})
    return sorted(session["id"] for session in response.json["other"])


def assert_page_headers(response):
    for name, value in PAGE_HEADERS.items():
        assert response.headers[name] == value, name
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy


class Markup(HTMLParser):
    """Every script and style of a page, and every attribute that would run or style inline."""

    def __init__(self):
        super().__init__()
        self.scripts, self.inline = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs.get("src"))
        if tag == "style":
            self.inline.append("<style>")
        self.inline += [name for name in attrs if name.startswith("on") or name == "style"]


def test_sign_in_goes_to_rd_with_a_new_session_cookie_and_the_api_sees_it(app, browser, client, security_events):
    before = listed(client)
    response = sign_in(browser, rd="/files/a%20b.txt?x=1&y=%26#top")
    assert response.status_code == 303
    assert response.headers["Location"] == "/files/a%20b.txt?x=1&y=%26#top"
    assert_page_headers(response)
    set_cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("zipline_token="))
    assert "HttpOnly" in set_cookie and "Path=/" in set_cookie and "Secure" not in set_cookie
    assert len(listed(client)) == len(before) + 1
    assert browser.get("/api/user/sessions").json["current"]["client"] == "Chrome"
    # The same events as the API's login: this browser is also a device alice never used.
    assert [e["event"] for e in security_events if e["event"].startswith("login")] == [
        "login.success", "login.new_device"]


def test_without_rd_sign_in_goes_to_your_devices(browser):
    assert sign_in(browser).headers["Location"] == "/auth/sessions"


@pytest.mark.parametrize("rd", [
    "//evil.example/x", "https://evil.example/", "http://evil.example", "/\\evil.example", "\\\\evil.example",
    "javascript:alert(1)", "JavaScript:alert(1)", "%2F%2Fevil.example", "/%2F/evil.example", "/%5Cevil.example",
    "%252F%252Fevil.example", "/%252F/evil.example", "/\t/evil.example", "/\n/evil.example", "/x\r\nSet-Cookie: a=b",
    "/%0d%0aSet-Cookie:%20a=b", " //evil.example", "https://files.example.com@evil.example/",
    "https://evil.example\\@files.example.com/", "files/x", "", "data:text/html,hi", "/" + "a" * 5000,
])
def test_rd_never_leads_off_site(rd, app):
    with app.test_request_context("/auth/login", base_url="http://files.example.com"):
        assert safe_redirect(rd) == "/auth/sessions"


@pytest.mark.parametrize("rd", ["/files/ok?x=1&y=%26", "/files/a b.txt", "http://files.example.com/files/x",
                                "https://sibling.example.com/f?q=1"])
def test_rd_on_this_origin_or_a_listed_one_is_kept(rd, make_seeded_app):
    app = make_seeded_app(REDIRECT_ORIGINS="https://sibling.example.com")
    with app.test_request_context("/auth/login", base_url="http://files.example.com"):
        assert safe_redirect(rd) == rd.replace(" ", "%20")


def test_the_proxy_hand_over_sends_the_browser_to_sign_in_with_the_original_uri(browser):
    original = "/files/a%20b.txt?x=1&y=%26&z=%23"
    response = browser.get("/auth/login", headers={"X-Original-URI": original})
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/auth/login" and parse_qs(location.query) == {"rd": [original]}
    assert_page_headers(response)
    page = browser.get(response.headers["Location"], headers={"X-Original-URI": original})
    assert page.status_code == 200 and f'name="rd" value="{original.replace("&", "&amp;")}"' in page.text
    assert browser.get("/auth/login", headers={"X-Original-URI": "//evil.example"}).headers["Location"] == "/auth/login"


def test_a_wrong_password_or_user_gives_the_form_again_keeping_the_username_only(browser, client):
    before = listed(client)
    answers = [sign_in(browser, "alice", "not it"), sign_in(browser, "nobody", "wonderland")]
    for response, username in zip(answers, ("alice", "nobody"), strict=True):
        assert response.status_code == 401
        assert_page_headers(response)
        assert response.text.count("Invalid username or password") == 1
        assert f'value="{username}" autocomplete="username"' in response.text
        assert "not it" not in response.text and "wonderland" not in response.text
        assert 'autocomplete="current-password"' in response.text
    assert listed(client) == before


def test_sign_in_shares_the_api_login_limit_and_answers_a_429_page(make_seeded_app):
    app = make_seeded_app(LOGIN_RATE_LIMIT="2 per minute")
    browser, client = app.test_client(), app.test_client()
    assert client.post("/api/auth/login", json={"username": "alice", "password": "x"}).status_code == 401
    assert sign_in(browser, password="y").status_code == 401
    refused = sign_in(browser)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.content_type.startswith("text/html") and "Too many login attempts" in refused.text
    assert_page_headers(refused)
    assert client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"}).status_code == 429


def test_a_post_without_a_token_or_from_another_site_changes_nothing(app, browser, client):
    sign_in(browser)
    before = listed(client)
    page = browser.get("/auth/sessions")
    token = token_of(page)
    for data, headers, status in (
        ({"all": "others"}, {}, 400),
        ({"all": "others", "csrf_token": "forged"}, {}, 400),
        ({"all": "others", "csrf_token": token}, {"Origin": "https://evil.example"}, 403),
        ({"all": "others", "csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}, 403),
    ):
        response = browser.post("/auth/sessions", data=data, headers=headers)
        assert response.status_code == status, data
        assert_page_headers(response)
        assert response.content_type.startswith("text/html")
    for route in ("/auth/logout", "/auth/login"):
        response = browser.post(route, data={"csrf_token": token, "username": "bob"},
                                headers={"Origin": "https://evil.example"})
        assert response.status_code == 403 and "Another site sent this form" in response.text
    assert listed(client) == before
    assert browser.get("/auth/sessions").status_code == 200  # still signed in


def test_a_token_is_bound_to_the_login_session_it_was_issued_for(app, browser, client):
    form_token = token_of(browser.get("/auth/login"))
    sign_in(browser)
    devices_token = token_of(browser.get("/auth/sessions"))
    assert devices_token != form_token
    # The sign-in form's token (issued before sign-in) cannot act for the new session.
    assert browser.post("/auth/sessions", data={"all": "others", "csrf_token": form_token}).status_code == 400
    # Another browser of the same user: its own cookie pair, its tokens not valid here and back.
    other = app.test_client()
    sign_in(other)
    other_token = token_of(other.get("/auth/sessions"))
    assert browser.post("/auth/sessions", data={"all": "others", "csrf_token": other_token}).status_code == 400
    # Planting another browser's whole pages cookie with its token does not help either.
    pages_cookie = other.get_cookie("zipline_pages", path="/auth/").value
    browser.set_cookie("zipline_pages", pages_cookie, path="/auth/")
    assert browser.post("/auth/sessions", data={"all": "others", "csrf_token": other_token}).status_code == 400
    assert len(listed(client)) == 4  # the seeded two and the two browsers'


def test_your_devices_lists_this_browser_first_then_the_most_recently_used(app, browser):
    sign_in(browser)
    with app.app_context():
        db.session.execute(update(models.Session).where(models.Session.c.id == "sess_def456")
                           .values(last_seen_at=datetime(2026, 1, 1), ip="203.0.113.7"))
        db.session.commit()
    page = browser.get("/auth/sessions")
    assert page.status_code == 200
    assert_page_headers(page)
    order = re.findall(r'<h2 id="d-\d+">([^<]+)', page.text)
    assert order == ["Chrome · Desktop ", "Mobile Safari · Mobile", "Chrome · Desktop"]
    assert "This device" in page.text.split('<h2 id="d-2">')[0]
    assert '<time datetime="2026-01-01T00:00:00.000Z">1 Jan 2026, 00:00 UTC</time> from 203.0.113.7' in page.text
    assert '<time datetime="2024-03-15T10:30:00.000Z">15 Mar 2024, 10:30 UTC</time>' in page.text
    assert page.text.count("Sign out this device") == 2 and "Sign out all other devices" in page.text
    assert "Sign out here" in page.text


def test_the_buttons_sign_out_one_all_others_and_here_through_the_api_code(app, browser, client, security_events):
    sign_in(browser)
    token = token_of(browser.get("/auth/sessions"))
    response = browser.post("/auth/sessions", data={"session": "sess_def456", "csrf_token": token})
    assert (response.status_code, response.headers["Location"]) == (303, "/auth/sessions")
    assert "sess_def456" not in listed(client)
    assert "Signed out 1 other session." in browser.get("/auth/sessions").text
    unknown = browser.post("/auth/sessions", data={"session": "sess_def456", "csrf_token": token})
    assert unknown.status_code == 400 and "Session not found in logged in sessions" in unknown.text
    browser.post("/auth/sessions", data={"all": "others", "csrf_token": token})
    mine = browser.get("/api/user/sessions").json
    assert mine["other"] == [] and listed(client) == [mine["current"]["id"]]
    assert [e["event"] for e in security_events if e["event"] == "sessions.revoked"] == ["sessions.revoked"] * 2

    response = browser.post("/auth/logout", data={"csrf_token": token})
    assert (response.status_code, response.headers["Location"]) == (303, "/auth/login")
    assert any(c.startswith("zipline_token=;") for c in response.headers.getlist("Set-Cookie"))
    assert listed(client) == []
    assert [e["event"] for e in security_events][-1] == "logout"
    # Signed out: the old token is refused, and "Your devices" sends the browser to sign in.
    assert browser.post("/auth/logout", data={"csrf_token": token}).status_code == 400
    assert browser.get("/auth/sessions").headers["Location"] == "/auth/login"


def test_every_page_loads_only_its_own_script_and_stylesheet_and_nothing_inline(browser):
    sign_in(browser)
    for path in ("/auth/login", "/auth/sessions", "/auth/login?rd=//x"):
        page = browser.get(path)
        markup = Markup()
        markup.feed(page.text)
        assert markup.scripts == ["/auth/static/pages.js"] and markup.inline == []
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    for name, kind in (("pages.css", "text/css"), ("pages.js", "text/javascript")):
        asset = browser.get(f"/auth/static/{name}")
        assert asset.status_code == 200 and asset.content_type.startswith(kind)
        assert_page_headers(asset)
    assert browser.get("/auth/static/other.js").status_code == 404


def test_devices_with_ten_sessions_and_all_it_loads_weigh_under_30_kb(app, browser):
    for _ in range(8):
        app.test_client().post("/api/auth/login", json={"username": "alice", "password": "wonderland"},
                               headers={"User-Agent": "x" * 1024})
    sign_in(browser)
    page = browser.get("/auth/sessions")
    assert page.text.count('<li class="card') == 11  # the seeded two, eight, this one
    weight = len(page.data) + sum(len(browser.get(f"/auth/static/{n}").data) for n in ("pages.css", "pages.js"))
    assert weight < 30 * 1024, weight


def test_pages_off_answer_404_in_the_contract_shape(make_seeded_app):
    client = make_seeded_app(PAGES=False).test_client()
    for method, path in (("GET", "/auth/login"), ("POST", "/auth/login"), ("GET", "/auth/sessions"),
                         ("POST", "/auth/logout"), ("GET", "/auth/static/pages.css")):
        assert_error(client.open(path, method=method), 404, "Not Found")


@pytest.mark.parametrize("config, headers, secure", [
    ({}, {}, False),
    ({"PUBLIC_ORIGIN": "https://files.example.com"}, {}, True),
    ({"TRUSTED_PROXIES": 1}, {"X-Forwarded-Proto": "https"}, True),
    ({}, {"X-Forwarded-Proto": "https"}, False),  # no proxy trusted: a client cannot say so
    ({"COOKIE_SECURE": True}, {}, True),
    ({"COOKIE_SECURE": False, "PUBLIC_ORIGIN": "https://files.example.com"}, {}, False),
])
def test_the_session_cookie_is_secure_whenever_the_service_is_reached_over_https(make_seeded_app, config, headers,
                                                                                 secure):
    app = make_seeded_app(**config)
    api = app.test_client().post("/api/auth/login", json={"username": "alice", "password": "wonderland"},
                                 headers=headers)
    page = sign_in(app.test_client(), headers=headers)
    for response in (api, page):
        assert response.status_code in (200, 303)
        flags = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("zipline_token="))
        assert ("Secure" in flags.split("; ")) == secure


def test_the_signing_key_is_shared_by_every_app_on_the_database_and_never_needs_setting(make_app, app):
    other = make_app()  # another worker, or the same service after a restart, on the same database
    assert app.secret_key and other.secret_key == app.secret_key
    with app.app_context():
        assert db.session.query(ServiceSecret).count() == 1
    browser = app.test_client()
    token = token_of(browser.get("/auth/login"))
    pages_cookie = browser.get_cookie("zipline_pages", path="/auth/").value
    moved = other.test_client()
    moved.set_cookie("zipline_pages", pages_cookie, path="/auth/")
    response = moved.post("/auth/login", data={"csrf_token": token, "username": "alice", "password": "wonderland"})
    assert response.status_code == 303
    assert make_app(SECRET_KEY="k" * 32).secret_key == "k" * 32


def test_programs_keep_using_the_api_without_a_csrf_token(client):
    response = client.post("/api/auth/login", json={"username": "alice", "password": "wonderland"})
    assert response.status_code == 200
    session = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    assert client.delete("/api/user/sessions", json={"all": True}, headers=cookie(session)).status_code == 200
    assert client.post("/api/auth/logout", headers=cookie(session)).status_code == 200
    assert "zipline_pages" not in response.headers.get("Set-Cookie", "")


def test_signing_in_again_in_the_same_browser_rotates_its_session_as_the_api_does(browser, client, security_events):
    sign_in(browser)
    first = browser.get("/api/user/sessions").json["current"]["id"]
    sign_in(browser)
    second = browser.get("/api/user/sessions").json["current"]["id"]
    assert first != second and first not in listed(client) and second in listed(client)
    rotated = [e for e in security_events if e["event"] == "login.rotated"]
    assert [(e["ended"], e["sessionId"]) for e in rotated] == [(first, second)]
