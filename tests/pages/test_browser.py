"""The pages as a person uses them: headless Chromium (Debian's, driven by Playwright) through
nginx and Caddy running examples/ as written, in front of a file host and the real service."""

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import IPHONE_SAFARI, WINDOWS_CHROME, empty_database
from playwright.sync_api import sync_playwright
from proxies import CONTENT, PROXIES, guarded_service

CHROMIUM = "/usr/bin/chromium"
AXE_VERSION = "4.14.1"  # npm axe-core, pinned
PASSWORD = "a long passphrase"
USERS = ("js", "nojs", "victim", "pages")
FILE = "/files/a%20b%26c.txt?x=1&y=%26"  # the file "a b&c.txt", with a query holding & and an escaped &
PHONE, DESKTOP = {"width": 320, "height": 640}, {"width": 1280, "height": 800}
OTHER_DEVICES = [WINDOWS_CHROME, IPHONE_SAFARI, "curl/8.5.0",
                 "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                 "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Safari/604.1",
                 "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile Safari/537.36",
                 "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Version/17.4 Safari/605.1.15",
                 "python-requests/2.32.3", ""]
SEED = {"users": [
    {"username": name, "password": PASSWORD, "token": f"tok-{name}",
     "sessions": [{"ua": ua, "createdAt": f"2026-11-{10 + i:02d}T08:{i:02d}:00Z"}
                  for i, ua in enumerate(OTHER_DEVICES if name == "pages" else [])]}
    for name in USERS]}


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        # Playwright adds --headless and --no-sandbox itself, and keeps Chromium off the network.
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script at AXE_VERSION: AXE_CORE_JS if set, else installed once by npm into a cache."""
    given = os.environ.get("AXE_CORE_JS")
    if given:
        return Path(given).read_text()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zipline-sessions-tests" / f"axe-{AXE_VERSION}"
    script = cache / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install axe-core (apt-get install npm), or set AXE_CORE_JS")
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(cache), "--no-save", "--no-audit", "--no-fund",
                        "--no-package-lock", f"axe-core@{AXE_VERSION}"], check=True, capture_output=True, timeout=300)
    return script.read_text()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    """Where the screenshots go: SESSIONS_TEST_SCREENSHOTS, else a folder of this run's."""
    given = os.environ.get("SESSIONS_TEST_SCREENSHOTS")
    folder = Path(given) if given else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module", params=list(PROXIES))
def site(request, tmp_path_factory, postgres_database):
    folder = tmp_path_factory.mktemp(request.param)
    with guarded_service(folder, empty_database(folder, postgres_database), SEED, request.param, workers=2) as guarded:
        yield guarded


def sign_in(page, username: str) -> None:
    """On the sign-in form: type and send it, as a person would (Enter in the password field)."""
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_load_state()


def api_sessions(site, username: str) -> list[str]:
    status, _, body, _ = site.exchange({"Authorization": f"tok-{username}"}, "/api/user/sessions")
    assert status == 200
    return sorted(session["id"] for session in json.loads(body)["other"])


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "nojs"])
def test_sign_in_come_back_and_sign_another_browser_out(site, browser, javascript):
    username = "js" if javascript else "nojs"
    first = browser.new_context(java_script_enabled=javascript)
    second = browser.new_context(java_script_enabled=javascript)
    try:
        page = first.new_page()
        page.goto(site.origin + FILE)
        assert page.url.startswith(site.origin + "/auth/login?rd=")
        sign_in(page, username)
        assert page.url == site.origin + FILE
        assert page.content().find(CONTENT.decode().strip()) >= 0

        other = second.new_page()
        other.goto(site.origin + FILE)
        sign_in(other, username)
        assert other.url == site.origin + FILE
        assert len(api_sessions(site, username)) == 2

        page.goto(site.origin + "/auth/sessions")
        devices = page.locator("ul.devices > li")
        assert devices.count() == 2
        assert "This device" in devices.nth(0).inner_text()
        devices.nth(1).get_by_role("button", name="Sign out this device").click()
        page.wait_for_load_state()
        assert page.url == site.origin + "/auth/sessions"
        assert "Signed out 1 other session." in page.inner_text("main")
        assert len(api_sessions(site, username)) == 1

        other.goto(site.origin + FILE)
        assert other.url.startswith(site.origin + "/auth/login?rd=")

        page.get_by_role("button", name="Sign out here").click()
        page.wait_for_load_state()
        assert page.url == site.origin + "/auth/login"
        assert api_sessions(site, username) == []
        page.goto(site.origin + FILE)
        assert page.url.startswith(site.origin + "/auth/login?rd=")
    finally:
        first.close()
        second.close()


@pytest.fixture
def hostile_site():
    """Another origin (localhost, where the service is 127.0.0.1) whose page auto-submits a form."""
    forms = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = forms[self.path].encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield forms, f"http://localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_page_on_another_site_that_submits_the_forms_changes_nothing(site, browser, hostile_site):
    forms, hostile = hostile_site
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.origin + "/auth/login")
        sign_in(page, "victim")
        # A second session of the victim's, for the forms to try to end.
        other = browser.new_context()
        other_page = other.new_page()
        other_page.goto(site.origin + "/auth/login")
        sign_in(other_page, "victim")
        before = api_sessions(site, "victim")
        cookies = sorted((c["name"], c["value"]) for c in context.cookies())
        targets = {
            "/login": ("/auth/login", {"username": "js", "password": PASSWORD}),
            "/others": ("/auth/sessions", {"all": "others"}),
            "/one": ("/auth/sessions", {"session": before[0]}),
            "/logout": ("/auth/logout", {}),
        }
        for name, (action, fields) in targets.items():
            inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
            forms[name] = (f'<!doctype html><form method="post" action="{site.origin}{action}">{inputs}'
                           '<input type="hidden" name="csrf_token" value="guess"></form>'
                           "<script>document.forms[0].submit()</script>")
            with page.expect_navigation(url=site.origin + action):
                page.goto(hostile + name)
            assert "Another site sent this form" in page.inner_text("main"), name
        assert api_sessions(site, "victim") == before
        assert sorted((c["name"], c["value"]) for c in context.cookies()) == cookies
        page.goto(site.origin + FILE)
        assert page.url == site.origin + FILE  # still signed in, as the victim
        other.close()
    finally:
        context.close()


PAGES = ("login", "login-refused", "sessions", "error")


def open_page(context, site, which: str):
    page = context.new_page()
    if which == "login":
        page.goto(site.origin + "/auth/login?rd=/files/hello.txt")
    elif which == "login-refused":
        page.goto(site.origin + "/auth/login")
        page.fill("#username", "pages")
        page.fill("#password", "not the password")
        page.press("#password", "Enter")
        page.wait_for_load_state()
        assert "Invalid username or password" in page.inner_text("main")
    elif which == "sessions":
        page.goto(site.origin + "/auth/login")
        sign_in(page, "pages")
        assert page.url == site.origin + "/auth/sessions"
    else:  # a form sent after its token was replaced
        page.goto(site.origin + "/auth/login")
        page.evaluate("document.querySelector('[name=csrf_token]').value = 'stale'")
        sign_in(page, "pages")
    return page


def serious_violations(page, axe_source: str) -> list:
    page.evaluate(axe_source)  # not a <script> tag: the page's CSP allows none, and stays on
    found = page.evaluate("async () => (await axe.run(document)).violations")
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in found
            if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("which", PAGES)
def test_every_page_is_accessible_keyboard_usable_fits_a_phone_and_follows_the_colour_scheme(
        site, browser, axe_source, screenshots, which):
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = open_page(context, site, which)
        assert serious_violations(page, axe_source) == []
        controls = page.evaluate("""() => [...document.querySelectorAll(
            'a[href], button, input:not([type=hidden]), select, textarea')].length""")
        reached = set()
        for _ in range(2 * controls + 2):  # around the page once, whichever control held focus first
            page.keyboard.press("Tab")
            focus = page.evaluate("""() => { const e = document.activeElement, s = getComputedStyle(e);
                return [e.outerHTML.slice(0, 80), s.outlineStyle, parseFloat(s.outlineWidth)]; }""")
            if not focus[0].startswith("<body"):
                reached.add(focus[0])
                assert focus[1] != "none" and focus[2] >= 2, focus  # visible focus
        assert len(reached) == controls

        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            for name, size in (("desktop", DESKTOP), ("phone", PHONE)):
                page.set_viewport_size(size)
                page.screenshot(path=screenshots / f"{site.kind}-{which}-{name}-{scheme}.png", full_page=True)
                assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (scheme, name)
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            if scheme == "light":
                light = background
        assert background != light  # the dark scheme is its own
    finally:
        context.close()
