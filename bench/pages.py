"""The sign-in pages: GET /auth/sessions against GET /api/user/sessions, page weights, and how
long a Chromium flow takes.

python bench/pages.py [--requests 2000] [--rounds 5] [--flows 5]

`serve.py` (Granian, one worker, access log off, SQLite) with a seeded user who has 10 live
sessions; one keep-alive connection asks for the same list by the same cookie, as HTML and as
JSON, alternating round by round; each row keeps its median round. Weights: each page's bytes
with the stylesheet and the script it loads (uncompressed). The flow: headless Chromium
(Debian's, through Playwright) opens the sign-in page, signs in, sees "Your devices", signs
another session out and signs out here; timed from a new browser context to the last page.
"""

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench passphrase"
CHROMIUM = "/usr/bin/chromium"
UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36",
       "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1",
       "curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"]


def start(work: Path) -> tuple[subprocess.Popen, str]:
    seed = {"users": [{"username": "bench", "password": PASSWORD, "token": "tok-bench", "sessions": [
        {"token": f"cookie-{i}", "ua": UAS[i % len(UAS)]} for i in range(10)]}]}
    (work / "seed.json").write_text(json.dumps(seed))
    ready = work / "ready"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_")},
           "SESSIONS_BIND": "127.0.0.1:0", "SESSIONS_READY_FILE": str(ready), "SESSIONS_WORKERS": "1",
           "SESSIONS_DATABASE_URL": f"sqlite:///{work / 'sessions.db'}", "SESSIONS_ACCESS_LOG": "off",
           "SESSIONS_SEED_FILE": str(work / "seed.json"), "SESSIONS_LOGIN_RATE_LIMIT": "off"}
    server = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while not (ready.exists() and ready.read_text().endswith("\n")):
        assert server.poll() is None, "the server exited"
        time.sleep(0.02)
    return server, ready.read_text().strip()


def timed_round(connection, path: str, requests: int) -> list[float]:
    took = []
    for _ in range(requests):
        began = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": "zipline_token=cookie-0"})
        response = connection.getresponse()
        response.read()
        took.append(time.perf_counter() - began)
        assert response.status == 200, (path, response.status)
    return took


def compare(base: str, requests: int, rounds: int) -> None:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    results = {"/auth/sessions": [], "/api/user/sessions": []}
    for path in results:
        timed_round(connection, path, 200)  # templates compiled, connections warm
    for _ in range(rounds):
        for path, rows in results.items():
            took = sorted(timed_round(connection, path, requests))
            rows.append((requests / sum(took), took[len(took) // 2] * 1000, took[int(len(took) * .99)] * 1000))
    print(f"{'GET':22} {'req/s (median round)':>20} {'p50 ms':>8} {'p99 ms':>8}   rounds (req/s)")
    medians = {}
    for path, rows in results.items():
        rows.sort()
        medians[path] = rows[len(rows) // 2]
        rate, p50, p99 = medians[path]
        print(f"{path:22} {rate:20.0f} {p50:8.2f} {p99:8.2f}   {', '.join(f'{r[0]:.0f}' for r in rows)}")
    print(f"pages / API: {medians['/auth/sessions'][0] / medians['/api/user/sessions'][0]:.2f}x")


def weights(base: str) -> None:
    host, port = base.removeprefix("http://").rsplit(":", 1)

    def get(path, headers=None):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.read()

    assets = sum(len(get(f"/auth/static/{name}")) for name in ("pages.css", "pages.js"))
    pages = {"sign in": get("/auth/login?rd=/files/a.txt"),
             "your devices (10 sessions)": get("/auth/sessions", {"Cookie": "zipline_token=cookie-0"})}
    print(f"stylesheet + script: {assets} bytes")
    for name, body in pages.items():
        print(f"{name}: {len(body)} bytes HTML, {len(body) + assets} bytes with what it loads")
    devices = pages["your devices (10 sessions)"].decode()
    assert devices.count('<li class="card') == 10 and re.search("csrf_token", devices)


def flows(base: str, count: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        began = time.perf_counter()
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        print(f"Chromium launch: {time.perf_counter() - began:.2f} s")
        took = []
        for _ in range(count):
            began = time.perf_counter()
            context = browser.new_context()
            page = context.new_page()
            page.goto(base + "/auth/login")
            page.fill("#username", "bench")
            page.fill("#password", PASSWORD)
            page.press("#password", "Enter")
            page.locator("ul.devices > li").nth(1).get_by_role("button", name="Sign out this device").click()
            page.get_by_role("button", name="Sign out here").click()
            assert page.url.endswith("/auth/login")
            took.append(time.perf_counter() - began)
            context.close()
        browser.close()
    print(f"flow (sign in, sign one other out, sign out here), {count} runs: median {statistics.median(took):.2f} s, "
          f"min {min(took):.2f} s, max {max(took):.2f} s (argon2id's hash included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--flows", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        server, base = start(Path(work))
        try:
            compare(base, args.requests, args.rounds)
            weights(base)
            if args.flows:
                flows(base, args.flows)
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
