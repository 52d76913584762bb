"""Start the real service (the CLI to seed, serve.py to run Granian) on a free loopback port."""

import contextlib
import http.client
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def loopback_http_server(handler):
    """A standard-library HTTP server for `handler` on a free loopback port, in a thread; yields
    the port and shuts the server down afterwards."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def static_page_server(page: bytes):
    """`page` as text/html on a free loopback port (another site's page, or a frontend's dev
    server); yields the port."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    with loopback_http_server(Page) as port:
        yield port


def wait_for(condition, what: str = "the condition", seconds: float = 30) -> None:
    """Poll `condition` every 50 ms until it holds; AssertionError naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class LiveServer:
    def __init__(self, workdir: Path, database_url: str, seed: dict | None, workers: int = 3,
                 env: dict | None = None):
        self.port = free_port()
        self.database_url = database_url
        self.env = {
            **os.environ,
            "SESSIONS_DATABASE_URL": database_url,
            "SESSIONS_LOGIN_RATE_LIMIT": "off",
            "SESSIONS_BIND": f"127.0.0.1:{self.port}",
            "SESSIONS_WORKERS": str(workers),
            **(env or {}),
        }
        self.log = workdir / "server.log"
        self.workers = workers
        self.process = None
        if seed is not None:
            seed_file = workdir / "seed.json"
            seed_file.write_text(json.dumps(seed))
            self.flask("seed", str(seed_file))

    def flask(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], check=False, cwd=ROOT,
                                env=self.env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr + result.stdout
        return result.stdout

    def start(self, ready_status: int = 401) -> "LiveServer":
        """Start serve.py; ready when an anonymous GET of the sessions answers `ready_status`
        (401; a database behind the code answers 503) and every worker is up."""
        command = [sys.executable, "serve.py"]
        with open(self.log, "ab") as log:
            # A session of its own, so that kill() can take the master and its workers at once.
            self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=log,
                                            start_new_session=True)
        deadline = time.monotonic() + 90  # generous: a loaded CI machine starts slowly
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if self.request("GET", "/api/user/sessions")[0] == ready_status and len(self.worker_pids()) == self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("server did not start:\n" + self.log.read_text())

    def worker_pids(self) -> list[int]:
        """The PIDs of the server's worker processes (Granian forks them from serve.py)."""
        tasks = Path(f"/proc/{self.process.pid}/task").glob("*/children")
        return sorted(int(pid) for task in tasks for pid in task.read_text().split())

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def kill(self) -> None:
        """SIGKILL the master and every worker: a crash, with no chance to finish anything."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, headers: dict | None = None, body=None, timeout: float = 30):
        """One request on a fresh connection: (status, headers, parsed JSON body)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body)
            all_headers = dict(headers or {})
            if payload is not None:
                all_headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=all_headers)
            response = connection.getresponse()
            raw = response.read()
            return response.status, response.headers, json.loads(raw) if raw else None
        finally:
            connection.close()
