"""Verify behind real proxies: nginx auth_request and Caddy forward_auth guard a static folder.

Each proxy runs the README's configuration (examples/nginx.conf, examples/Caddyfile) as written,
its three loopback addresses replaced by this test's ports (tests/proxies.py). The file host is a
standard-library HTTP server over a folder that records the headers each request brought.
"""

import html
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import SEED
from live_server import ROOT
from proxies import CONTENT, EXAMPLES, FORGED, PROXIES, guarded_service


@pytest.fixture(params=list(PROXIES))
def guarded(request, tmp_path, database_url):
    with guarded_service(tmp_path, database_url, SEED, request.param) as guarded:
        yield guarded


def test_only_logged_in_requests_reach_the_files_and_the_name_cannot_be_forged(guarded):
    for headers in ({}, FORGED, {"Authorization": "wrong", "Cookie": "zipline_token=cookie-abc"},
                    {"Cookie": "zipline_token=cookie-old"}):
        status, _, seen = guarded.request(headers)
        assert (status, seen) == (401, None), headers

    status, body, seen = guarded.request({"Cookie": "zipline_token=cookie-abc", **FORGED})
    assert (status, body) == (200, CONTENT)
    assert seen["Remote-User"] == "alice" and seen["X-Zipline-Username"] == "alice"
    assert seen["X-Zipline-User-Id"] == "1"
    # nginx passes the session the cookie named; Caddy (see the Caddyfile) passes none.
    assert seen.get("X-Zipline-Session-Id", "sess_abc123") == "sess_abc123"

    status, body, seen = guarded.request({"Authorization": "tok-bob", "remote-user": "admin",
                                          "X-Zipline-Session-Id": "sess_abc123"}, method="HEAD")
    assert status == 200
    assert seen == {"Remote-User": "bob", "X-Zipline-User-Id": "2", "X-Zipline-Username": "bob"}


def test_a_revoked_or_logged_out_session_is_refused_on_the_next_request(guarded):
    service = guarded.service
    cookies = []
    for _ in range(2):
        status, headers, _ = service.request("POST", "/api/auth/login", {},
                                             {"username": "alice", "password": "wonderland"})
        assert status == 200
        cookies.append({"Cookie": headers["Set-Cookie"].split(";")[0]})
    phone, laptop = cookies
    assert guarded.request(phone)[0] == 200
    assert guarded.request(laptop)[0] == 200

    assert service.request("DELETE", "/api/user/sessions", laptop, {"all": True})[0] == 200
    # Every one of these lands on whichever of the 3 workers answers: none lets the phone in.
    assert [guarded.request(phone)[0] for _ in range(6)] == [401] * 6
    assert guarded.request(laptop)[0] == 200

    assert service.request("POST", "/api/auth/logout", laptop)[0] == 200
    assert [guarded.request(laptop)[0] for _ in range(6)] == [401] * 6
    assert guarded.request({"Cookie": "zipline_token=cookie-bob"})[0] == 200  # another user's session stays


@pytest.mark.parametrize("example", ["nginx.conf", "Caddyfile"])
def test_the_readme_shows_the_configurations_these_tests_run(example):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Guard a file host", 1)[1].split("\n## ", 1)[0]
    assert "```\n" + (EXAMPLES / example).read_text() + "```" in section.replace("```nginx\n", "```\n").replace(
        "```caddy\n", "```\n")


def test_the_file_host_never_gets_the_session_cookie_the_token_or_identity_headers_spelled_with_underscores(guarded):
    forged = [("Cookie", "a=1; zipline_token=cookie-abc; b=2"), ("Remote_user", "admin"),
              ("X_Zipline_User_Id", "99"), ("x_zipline_username", "admin"), ("X_Zipline_Session_Id", "sess_x"),
              ("X-Forwarded-For", "6.6.6.6")]
    status, _, body, received = guarded.exchange(forged)
    assert (status, body) == (200, CONTENT)
    assert [name for name, _ in received if "_" in name] == []
    headers = {name.lower(): value for name, value in received}
    assert headers["cookie"] == "a=1; b=2"
    assert (headers["remote-user"], headers["x-zipline-user-id"], headers["x-forwarded-for"]) == (
        "alice", "1", "127.0.0.1")

    for sent in ({"Authorization": "tok-bob", "Cookie": "zipline_token=cookie-abc"},
                 {"Cookie": "zipline_token=cookie-abc"}):
        status, _, _, received = guarded.exchange(sent)
        assert status == 200
        assert {name.lower() for name, _ in received} & {"authorization", "cookie"} == set()


def test_verify_records_the_address_the_proxy_saw_not_the_one_the_client_claims(guarded):
    assert guarded.request({"Cookie": "zipline_token=cookie-def", "X-Forwarded-For": "6.6.6.6"})[0] == 200
    deadline = time.monotonic() + 20
    while True:  # the activity write runs after verify's answer has been sent
        listed = {row["id"]: row for row in json.loads(guarded.service.flask("list-sessions", "alice", "--json"))}
        if listed["sess_def456"]["ip"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert listed["sess_def456"]["ip"] == "127.0.0.1"


@pytest.mark.parametrize("headers", [
    {"Accept": "application/json"},
    {"Accept": "application/json, text/html"},
    {"Accept": "text/html", "Authorization": "wrong"},
    {},  # curl and scripts: no Accept, or */*
    {"Accept": "*/*"},
])
def test_a_program_that_is_refused_gets_the_401_json(guarded, headers):
    status, response_headers, body, received = guarded.exchange(headers, "/files/hello.txt?x=1")
    assert (status, received) == (401, None)
    assert response_headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"statusCode": 401, "error": "Unauthorized", "message": "Invalid login session"}


def test_a_browser_that_is_refused_goes_to_sign_in_and_rd_keeps_the_whole_uri(guarded):
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    for uri in ("/files/hello.txt", "/files/a%20b%26c%23d.txt?x=1&y=a%20b&z=%26%23", "/files/x?rd=//evil.example"):
        status, headers, _, received = guarded.exchange(browser, uri)
        assert (status, received) == (302, None), uri
        location = urlsplit(headers["Location"])
        assert location.path == "/auth/login" and parse_qs(location.query) == {"rd": [uri]}
        status, headers, page, _ = guarded.exchange(browser, headers["Location"])
        assert status == 200 and b'name="rd" value="' + html.escape(uri).encode() + b'"' in page
    # The service's own routes pass through unguarded; logging in through the proxy works.
    status, headers, _, _ = guarded.exchange({"Content-Type": "application/json"}, "/api/user/sessions")
    assert status == 401
    assert guarded.exchange(browser, "/auth/sessions")[0] == 302
