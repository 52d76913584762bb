"""Real nginx and Caddy running examples/ as written, in front of a recording file host and the
service (the proxy tests and the browser tests share them)."""

import contextlib
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
    """A static folder served over HTTP; `seen` holds the identity headers of every request,
    `received` every header of every request as (name, value) pairs, as they came."""

    def __init__(self, folder: Path):
        (folder / "files").mkdir(parents=True)
        (folder / "files" / "hello.txt").write_bytes(CONTENT)
        (folder / "files" / "a b&c.txt").write_bytes(CONTENT)
        self.seen: list[dict] = []
        self.received: list[list[tuple[str, str]]] = []
        seen, received = self.seen, self.received

        class Handler(SimpleHTTPRequestHandler):
            def send_head(self):
                seen.append({name: self.headers[name] for name in IDENTITY_HEADERS if name in self.headers})
                received.append(list(self.headers.items()))
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

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, headers: dict, path: str = FILE, method: str = "GET") -> tuple[int, bytes, dict | None]:
        """(status, body, the identity headers the file host saw or None when it was not reached)."""
        status, _, body, received = self.exchange(headers, path, method)
        identity = {name: value for name, value in received or () if name in IDENTITY_HEADERS}
        return status, body, None if received is None else identity

    def exchange(self, headers: dict | list, path: str = FILE, method: str = "GET"):
        """(status, response headers, body, every header the file host received as (name, value)
        pairs or None when it was not reached). `headers` may be a list of pairs, to send one
        name twice."""
        before = len(self.file_host.received)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in headers.items() if isinstance(headers, dict) else headers:
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        received = self.file_host.received[before:]
        assert len(received) <= 1
        return response.status, response.headers, body, received[0] if received else None


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


@contextlib.contextmanager
def guarded_service(folder: Path, database_url: str, seed: dict, kind: str, workers: int = 3):
    """The service (as the examples say to run it: SESSIONS_TRUSTED_PROXIES=1, its public origin
    the proxy's), the file host and `kind`'s proxy running its example; yields a Guarded."""
    program, start = PROXIES[kind]
    if not os.access(program, os.X_OK):
        raise AssertionError(f"{program} is not installed (apt-get install {kind})")
    port = free_port()
    service = LiveServer(folder, database_url, seed, workers=workers,
                         env={"SESSIONS_TRUSTED_PROXIES": "1", "SESSIONS_PUBLIC_ORIGIN": f"http://127.0.0.1:{port}"})
    service.start()
    file_host = FileHost(folder / "site")
    proxy = None
    try:
        proxy = start(folder / kind, port, file_host.port, service.port)
        wait_for_port(proxy, port, kind)
        guarded = Guarded(service, file_host, proxy, port)
        guarded.kind = kind
        yield guarded
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
