"""Several instances on one database behind nginx's round robin (examples/nginx-upstream.conf),
run as separate machines would run them: each serve.py on its own port, one worker each.

A revocation or logout through one instance denies the very next request through every other;
the login limit counts across instances; every session event is delivered at least once,
recorded once, and an instance SIGKILLed in the middle of a delivery leaves its events to the
others; the test-control clock is the same on all."""

import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import SEED
from live_server import ROOT, LiveServer, free_port

NGINX = "/usr/sbin/nginx"
SECRET = "instances-secret-0123456789"
SESSIONS = "/api/user/sessions"
LOGIN = "/api/auth/login"
PLACEHOLDERS = ("127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")


def start_nginx(folder: Path, listen: int, instances: list[int]) -> subprocess.Popen:
    text = (ROOT / "examples" / "nginx-upstream.conf").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{listen}")
    for placeholder, port in zip(PLACEHOLDERS, instances, strict=True):
        text = text.replace(placeholder, f"127.0.0.1:{port}")
    folder.mkdir()
    temp_paths = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = folder / "nginx.conf"
    config.write_text(("user root;\n" if os.geteuid() == 0 else "")
                      + f"daemon off;\nmaster_process on;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
                      + f"error_log {folder / 'error.log'} info;\nevents {{ worker_connections 256; }}\n"
                      + f"http {{\n    access_log off;\n{temp_paths}\n{text}}}\n")
    command = [NGINX, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")]
    check = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stderr
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


class GatedReceiver:
    """A webhook receiver that holds every delivery while its gate is shut, and answers 204 once
    it is open (503 at once while `failing` is set); it records the client port of each delivery
    it held."""

    def __init__(self):
        self.gate, self.lock, self.held = threading.Event(), threading.Lock(), threading.Event()
        self.failing = threading.Event()
        self.accepted: list[dict] = []  # payloads answered 204
        self.holding: list[int] = []  # client ports of deliveries held at the gate
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                import json

                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failing.is_set():
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if not receiver.gate.is_set():
                    with receiver.lock:
                        receiver.holding.append(self.client_address[1])
                    receiver.held.set()
                    receiver.gate.wait(60)
                with receiver.lock:
                    receiver.accepted.append(json.loads(body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def ids(self) -> set:
        with self.lock:
            return {payload["id"] for payload in self.accepted}

    def stop(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


def owner_of_connection(client_port: int, servers: list[LiveServer]) -> LiveServer:
    """The instance whose worker holds the TCP connection from `client_port` (ss -tnp)."""
    listing = subprocess.run(["ss", "-Htnp", "sport", f"= :{client_port}"], capture_output=True, text=True,
                             check=False).stdout
    for server in servers:
        if any(f"pid={pid}," in listing for pid in server.worker_pids()):
            return server
    raise AssertionError(f"no instance holds the connection from port {client_port}: {listing!r}")


def via(port: int, method: str, path: str, headers: dict | None = None, body=None):
    import json

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers={**(headers or {}),
                           **({"Content-Type": "application/json"} if payload else {})})
        response = connection.getresponse()
        raw = response.read()
        return response.status, response.headers, json.loads(raw) if raw else None
    finally:
        connection.close()


@pytest.fixture
def three_instances(request, tmp_path, database_url):
    """Three instances (login limit: the test's parameter, else off), nginx, a webhook receiver."""
    receiver = GatedReceiver()
    receiver.gate.set()
    limit = getattr(request, "param", "off")
    env = {"SESSIONS_TRUSTED_PROXIES": "1", "SESSIONS_LOGIN_RATE_LIMIT": limit,
           "SESSIONS_WEBHOOK_URL": receiver.url, "SESSIONS_WEBHOOK_SECRET": SECRET,
           "SESSIONS_WEBHOOK_RETRY_BASE": "0.2", "SESSIONS_TEST_CONTROL": "true", "SESSIONS_ACCESS_LOG": "off"}
    servers = []
    for n in range(3):
        folder = tmp_path / f"instance{n}"
        folder.mkdir()
        servers.append(LiveServer(folder, database_url, SEED if n == 0 else None, workers=1, env=env).start())
    proxy_port = free_port()
    nginx = start_nginx(tmp_path / "nginx", proxy_port, [server.port for server in servers])
    deadline = time.monotonic() + 30
    while True:
        try:
            via(proxy_port, "GET", "/api/health")
            break
        except OSError:
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
    try:
        yield servers, proxy_port, receiver
    finally:
        os.killpg(nginx.pid, signal.SIGTERM)
        nginx.wait(30)
        for server in servers:
            if server.process.poll() is None:
                server.stop()
        receiver.stop()


def log_in(port: int, user_agent: str) -> dict:
    status, headers, _ = via(port, "POST", LOGIN, {"User-Agent": user_agent},
                             {"username": "alice", "password": "wonderland"})
    assert status == 200
    return {"Cookie": headers["Set-Cookie"].split(";")[0]}


@pytest.mark.parametrize("three_instances", ["3 per minute"], indirect=True)
def test_three_instances_share_revocations_limits_events_and_the_clock(three_instances):
    servers, proxy, receiver = three_instances
    ports = [server.port for server in servers]
    # The round robin spreads requests: each instance answers some of six.
    laptop, phone = log_in(proxy, "laptop"), log_in(proxy, "phone")
    phone_id = via(proxy, "GET", SESSIONS, phone)[2]["current"]["id"]

    # A revocation through one instance denies the very next request through every other.
    assert via(ports[0], "DELETE", SESSIONS, laptop, {"sessionId": phone_id})[0] == 200
    assert [via(port, "GET", SESSIONS, phone)[0] for port in ports[1:]] == [401, 401]
    assert [via(proxy, "GET", "/api/auth/verify", phone)[0] for _ in range(6)] == [401] * 6
    # A logout through one: the same.
    assert via(ports[1], "POST", "/api/auth/logout", laptop)[0] == 200
    assert [via(port, "GET", "/api/auth/verify", laptop)[0] for port in (ports[2], ports[0])] == [401, 401]

    # The login limit (3 per minute per username and address) counts across instances.
    wrong = {"username": "bob", "password": "not bob's"}
    assert [via(port, "POST", LOGIN, {}, wrong)[0] for port in (*ports, ports[0])] == [401, 401, 401, 429]

    # The test-control clock is the same on every instance. (It stays set until the events are
    # delivered: an event is due by the service's clock, so one made in 2030 waits for 2030.)
    assert via(ports[2], "POST", "/__test__/clock", {}, {"set": "2030-01-01T00:00:00Z"})[0] == 200
    assert {via(port, "GET", "/__test__/clock")[2]["now"] for port in ports} == {"2030-01-01T00:00:00.000Z"}
    fresh = log_in(ports[0], "clock")
    assert via(ports[1], "GET", SESSIONS, fresh)[2]["current"]["createdAt"] == "2030-01-01T00:00:00.000Z"

    # Every event so far is delivered, each id once in the outbox; the receiver may see one twice.
    expected = {("session.created", None)} | {("session.revoked", phone_id)}
    deadline = time.monotonic() + 60
    while (via(proxy, "GET", "/api/health")[2]["events"]["pending"]
           or len([p for p in receiver.accepted if p["type"] == "session.created"]) < 3):
        assert time.monotonic() < deadline, receiver.accepted
        time.sleep(0.1)
    kinds = {(payload["type"], payload["session"]["id"] if payload["type"] != "session.created" else None)
             for payload in receiver.accepted}
    assert expected <= kinds
    assert len([p for p in receiver.accepted if p["type"] == "session.created"]) >= 3
    assert len(receiver.ids()) == len({(p["type"], p["session"]["id"]) for p in receiver.accepted})
    assert via(ports[1], "POST", "/__test__/clock", {}, {"release": True})[0] == 200


def test_an_instance_killed_in_a_delivery_leaves_its_events_to_the_others(three_instances):
    servers, proxy, receiver = three_instances
    receiver.failing.set()  # refused while the logins run: their events wait for retries
    cookies = [log_in(proxy, f"device {n}") for n in range(6)]
    receiver.gate.clear()  # then held: one will be in flight when its instance dies
    receiver.failing.clear()
    assert receiver.held.wait(30), "no delivery reached the receiver"
    with receiver.lock:
        first_port = receiver.holding[0]
    victim = owner_of_connection(first_port, servers)
    victim.kill()  # SIGKILL, in the middle of its delivery (its events stay leased)
    killed_at = time.monotonic()
    receiver.gate.set()
    others = [server for server in servers if server is not victim]
    for cookie in cookies:  # nothing answered was lost with it
        assert via(others[0].port, "GET", SESSIONS, cookie)[0] == 200
    created = {via(others[1].port, "GET", SESSIONS, cookie)[2]["current"]["id"] for cookie in cookies}
    deadline = killed_at + 90
    while True:
        delivered = {p["session"]["id"] for p in receiver.accepted if p["type"] == "session.created"}
        if created <= delivered and not via(others[0].port, "GET", "/api/health")[2]["events"]["pending"]:
            break
        assert time.monotonic() < deadline, f"undelivered 90 s after the kill: {created - delivered}"
        time.sleep(0.5)
    took = time.monotonic() - killed_at
    # Each event is one id: a redelivery repeats its id, never a second one for a session.
    by_session = {}
    for payload in receiver.accepted:
        if payload["type"] == "session.created":
            by_session.setdefault(payload["session"]["id"], set()).add(payload["id"])
    assert all(len(ids) == 1 for ids in by_session.values())
    print(f"\nevery event delivered {took:.1f} s after the SIGKILL (lease 60 s)")


def test_the_readme_shows_the_upstream_block_this_test_runs():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### More than one machine", 1)[1].split("\n## ", 1)[0]
    assert "```nginx\n" + (ROOT / "examples" / "nginx-upstream.conf").read_text() + "```" in section


def test_clients_that_never_finish_their_body_hold_no_instance(three_instances):
    servers, proxy, _ = three_instances
    # 60 clients each promise a body and send a part of it, then nothing: nginx buffers bodies
    # (proxy_request_buffering, its default), so no instance ever sees these requests.
    stalled = []
    for _ in range(60):
        client = socket.create_connection(("127.0.0.1", proxy))
        client.sendall(b"POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 1000\r\n\r\n{\"username\": \"al")
        stalled.append(client)
    try:
        # Every instance's request threads stay free: every route answers through nginx.
        answers = [via(proxy, "GET", "/api/auth/verify", {"Authorization": "tok-alice"})[0] for _ in range(12)]
        answers.append(via(proxy, "POST", LOGIN, {}, {"username": "alice", "password": "wonderland"})[0])
        answers += [via(server.port, "GET", "/api/auth/verify", {"Authorization": "tok-alice"})[0]
                    for server in servers]
        assert answers == [200] * 16
    finally:
        for client in stalled:
            client.close()
