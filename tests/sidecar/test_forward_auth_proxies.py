"""Verify behind real proxies: nginx auth_request and Caddy forward_auth guard a static folder.

Each proxy runs the README's configuration (examples/nginx.conf, examples/Caddyfile) as written,
its three loopback addresses replaced by this test's ports. The file host is a standard-library
HTTP server over a folder that records the headers each request brought.
"""

import functools
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import SEED
from live_server import ROOT, LiveServer, free_port

EXAMPLES = ROOT / "examples"
NGINX = "/usr/sbin/nginx"
CADDY = "/usr/bin/caddy"
FILE = "/files/hello.txt"
CONTENT = b"hello from the file host\n"
IDENTITY_HEADERS = ("Remote-User", "X-Zipline-User-Id", "X-Zipline-Username", "X-Zipline-Session-Id")
FORGED = {"Remote-User": "admin", "X-Zipline-User-Id": "99", "X-Zipline-Username": "admin",
          "X-Zipline-Session-Id": "sess_forged"}


class FileHost:
    """A static folder served over HTTP; `seen` holds the identity headers of every request."""

    def __init__(self, folder: Path):
        (folder / "files").mkdir(parents=True)
        (folder / "files" / "hello.txt").write_bytes(CONTENT)
        self.seen: list[dict] = []
        seen = self.seen

        class Handler(SimpleHTTPRequestHandler):
            def send_head(self):
                seen.append({name: self.headers[name] for name in IDENTITY_HEADERS if name in self.headers})
                return super().send_head()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def configured(example: str, listen: int, file_host: int, service: int) -> str:
    """An example configuration with its placeholder addresses replaced by real ports."""
    text = (EXAMPLES / example).read_text()
    for placeholder in ("127.0.0.1:8080", "127.0.0.1:3000", "127.0.0.1:8000"):
        assert placeholder in text, (example, placeholder)
    return (text.replace("127.0.0.1:8080", f"127.0.0.1:{listen}")
            .replace("127.0.0.1:3000", f"127.0.0.1:{file_host}")
            .replace("127.0.0.1:8000", f"127.0.0.1:{service}"))


def start_nginx(folder: Path, port: int, file_host: int, service: int) -> subprocess.Popen:
    """nginx in the foreground with its own prefix, config, pid file, logs and temp paths."""
    folder.mkdir()
    temp_paths = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = folder / "nginx.conf"
    config.write_text(
        # As root, workers would run as nobody and could not enter pytest's 0700 folders.
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        + f"error_log {folder / 'error.log'} info;\nevents {{ worker_connections 64; }}\n"
        + f"http {{\n    access_log {folder / 'access.log'};\n{temp_paths}\n"
        + configured("nginx.conf", port, file_host, service) + "}\n")
    command = [NGINX, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def start_caddy(folder: Path, port: int, file_host: int, service: int) -> subprocess.Popen:
    """caddy run with no admin endpoint, no HTTPS, and every file it keeps under `folder`."""
    folder.mkdir()
    caddyfile = folder / "Caddyfile"
    caddyfile.write_text(f"{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {folder / 'storage'}\n}}\n\n"
                         + configured("Caddyfile", port, file_host, service))
    env = {**os.environ, "HOME": str(folder), "XDG_DATA_HOME": str(folder / "data"),
           "XDG_CONFIG_HOME": str(folder / "config")}
    log = open(folder / "caddy.log", "wb")  # noqa: SIM115 - closed with the process
    with log:
        return subprocess.Popen([CADDY, "run", "--config", str(caddyfile), "--adapter", "caddyfile"], env=env,
                                stdout=log, stderr=log, start_new_session=True)


PROXIES = {"nginx": (NGINX, start_nginx), "caddy": (CADDY, start_caddy)}


class Guarded:
    """The service, the file host and a proxy in front of it: request() goes through the proxy."""

    def __init__(self, service: LiveServer, file_host: FileHost, proxy: subprocess.Popen, port: int):
        self.service, self.file_host, self.proxy, self.port = service, file_host, proxy, port

    def request(self, headers: dict, path: str = FILE, method: str = "GET") -> tuple[int, bytes, dict | None]:
        """(status, body, the identity headers the file host saw or None when it was not reached)."""
        before = len(self.file_host.seen)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        seen = self.file_host.seen[before:]
        assert len(seen) <= 1
        return response.status, body, seen[0] if seen else None


def wait_for_port(process: subprocess.Popen, port: int, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not listen on {port}")


@pytest.fixture(params=list(PROXIES))
def guarded(request, tmp_path, database_url):
    program, start = PROXIES[request.param]
    if not os.access(program, os.X_OK):
        pytest.fail(f"{program} is not installed (apt-get install {request.param})")
    service = LiveServer(tmp_path, database_url, SEED, workers=3).start()
    file_host = FileHost(tmp_path / "site")
    port = free_port()
    proxy = None
    try:
        proxy = start(tmp_path / request.param, port, file_host.port, service.port)
        wait_for_port(proxy, port, request.param)
        yield Guarded(service, file_host, proxy, port)
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGTERM)
            try:
                proxy.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proxy.pid, signal.SIGKILL)
                proxy.wait(timeout=15)
        file_host.stop()
        service.stop()


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
