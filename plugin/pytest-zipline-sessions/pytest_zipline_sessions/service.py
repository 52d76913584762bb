"""One running zipline-sessions service: started with `zipline-sessions serve`, driven over HTTP."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_zipline_sessions.clients import ServiceSession

START_SECONDS = 60  # a start slower than this is a failure (a normal one takes well under a second)
STOP_SECONDS = 30


class StartError(Exception):
    """The service could not be started; the message is one line, for the test report."""


class ZiplineSessions:
    """The service of this test session: its `url`, test control (reset, clock, faults, journal),
    and its log."""

    def __init__(self, command: str, work: Path, port: int = 0, workers: int = 1, seed: Path | None = None,
                 error_profile: str | None = None, environ: dict | None = None, parent_pid: int | None = None):
        self.command, self.work, self.seed_file = command, work, seed
        self.log_path = work / "zipline-sessions.log"
        self.ready_file = work / "ready"
        self.failed_file = work / "failed"  # the StartError of a service another process launched
        # Of a service forked by `zipline-sessions serve-each` (launch_together): its master's PID
        # and, once it has ended, its exit status.
        self.pid_file = work / "pid"
        self.exit_file = work / "exited"
        self.launcher: subprocess.Popen | None = None
        self.launcher_log: Path | None = None
        inherited = dict(os.environ if environ is None else environ)
        self.env = {
            "SESSIONS_LOGIN_RATE_LIMIT": "off",  # many logins per test; the user's setting wins
            **inherited,
            "SESSIONS_BIND": f"127.0.0.1:{port}",
            "SESSIONS_READY_FILE": str(self.ready_file),
            "SESSIONS_TEST_CONTROL": "true",
            "SESSIONS_DATABASE_URL": f"sqlite:///{work / 'sessions.db'}",
            "SESSIONS_WORKERS": str(workers),
            # It stops when this test run is gone, even SIGKILLed.
            "SESSIONS_PARENT_PID": str(os.getpid() if parent_pid is None else parent_pid),
        }
        if seed is not None:
            self.env["SESSIONS_SEED_FILE"] = str(seed)
        if error_profile:
            self.env["SESSIONS_ERROR_PROFILE"] = error_profile
        self.process: subprocess.Popen | None = None  # None in a process that did not launch it
        self._stopping = False
        self.url = ""
        self._seed_document = json.loads(seed.read_text()) if seed is not None else None
        self._http = None  # a requests.Session for test control, made on first use

    # ---- the process

    def start(self) -> "ZiplineSessions":
        """Start `zipline-sessions serve` in a process group of its own; wait until it answers."""
        self.launch()
        return self.wait_until_ready()

    def launch(self) -> None:
        """Start `zipline-sessions serve` in a process group of its own, without waiting."""
        for leftover in (self.ready_file, self.failed_file):
            leftover.unlink(missing_ok=True)
        self._stopping = False
        with open(self.log_path, "ab") as log:
            try:
                self.process = subprocess.Popen([self.command, "serve"], env=self.env, stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as error:
                raise StartError(f"zipline-sessions: cannot run {self.command!r}: {error.strerror}") from None

    def launch_for_another_process(self) -> None:
        """Launch, and watch the start in a thread: a failed start is written to `failed_file`,
        where the process that uses the service (an xdist worker) reads it."""
        self.launch()
        self._watch_start()

    def _watch_start(self) -> None:
        def watch():
            try:
                self.wait_until_ready()
            except StartError as error:
                partial = self.failed_file.with_suffix(".partial")
                partial.write_text(str(error))
                partial.replace(self.failed_file)

        threading.Thread(target=watch, name="zipline-sessions-start", daemon=True).start()

    def wait_until_ready(self) -> "ZiplineSessions":
        """Wait until the service answers (its ready file holds its URL); StartError if it exits
        first, fails to start (`failed_file`) or takes longer than START_SECONDS."""
        deadline = time.monotonic() + START_SECONDS
        while not (self.ready_file.exists() and self.ready_file.read_text().endswith("\n")):
            if self.process is not None and self.process.poll() is not None:
                raise StartError(f"zipline-sessions did not start (exit status {self.process.returncode}): "
                                 f"{self._last_words()}")
            if self.exit_file.exists():
                raise StartError(f"zipline-sessions did not start (exit status {self.exit_file.read_text().strip()}): "
                                 f"{self._last_words()}")
            if self.launcher is not None and self.launcher.poll() is not None and not self.exit_file.exists():
                raise StartError(f"zipline-sessions serve-each ended (exit status {self.launcher.returncode}) "
                                 f"before this service started: {_last_words(self.launcher_log)}")
            if self.failed_file.exists():
                raise StartError(self.failed_file.read_text())
            if time.monotonic() > deadline:
                self.stop()
                raise StartError(f"zipline-sessions did not answer within {START_SECONDS} s: {self._last_words()}")
            time.sleep(0.005)
        self.url = self.ready_file.read_text().strip()
        return self

    def stop(self) -> None:
        """SIGTERM to the service (a graceful stop: it stops its workers), SIGKILL to its process
        group if it is not over in time; only in the process that launched it."""
        if self.launcher is not None:
            self.begin_stop()
            deadline = time.monotonic() + STOP_SECONDS
            while not self._forked_service_ended():
                if time.monotonic() > deadline:
                    if pid := self._forked_pid():
                        _signal_group(pid, signal.SIGKILL)
                    break
                time.sleep(0.005)
            return
        if self.process is None or self.process.poll() is not None:
            return
        self.begin_stop()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def begin_stop(self) -> None:
        """SIGTERM to the service, once, without waiting (stop() then waits). Its master alone:
        it passes the stop to its workers, and a worker signalled twice at once can hang inside
        Granian until the master kills it (serve.py, relay_signals_through_a_thread)."""
        if self._stopping:
            return
        if self.process is not None and self.process.poll() is None:
            self._stopping = True
            self.process.send_signal(signal.SIGTERM)
        elif self.launcher is not None and not self._forked_service_ended() and (pid := self._forked_pid()):
            self._stopping = True
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _forked_pid(self) -> int | None:
        """The master PID of a service forked by serve-each, once it is written."""
        text = self.pid_file.read_text() if self.pid_file.exists() else ""
        return int(text) if text.endswith("\n") else None

    def _forked_service_ended(self) -> bool:
        """A service forked by serve-each has ended, or will never be: serve-each is over."""
        return self.exit_file.exists() or self.launcher.poll() is not None

    def log(self, since: int = 0) -> str:
        """The service's log (its stdout and stderr), from byte `since` on."""
        with open(self.log_path, "rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def _last_words(self) -> str:
        return _last_words(self.log_path)

    # ---- clients

    def session(self, **headers) -> "ServiceSession":
        """A requests.Session on the service (relative URLs), with these headers on every request."""
        from pytest_zipline_sessions.clients import ServiceSession

        client = ServiceSession(self.url)
        client.headers.update(headers)
        return client

    def login(self, username: str, password: str, user_agent: str | None = None) -> "ServiceSession":
        """Log `username` in: a requests.Session holding the session cookie."""
        client = self.session(**({"User-Agent": user_agent} if user_agent else {}))
        answer = client.post("/api/auth/login", json={"username": username, "password": password})
        if answer.status_code != 200:
            raise AssertionError(f"login of {username!r} refused: {answer.status_code} {answer.text.strip()}")
        return client

    # ---- test control

    def reset(self, seed=True) -> dict:
        """Empty the store, release the clock, clear faults and the journal; then load a seed:
        True: the configured seed file (if any); None or False: none; a dict or a path: that one."""
        document = self._seed_document if seed is True else _seed_document(seed)
        return self.control("POST", "/reset", document)

    def add_seed(self, seed) -> dict:
        """Add a seed document (a dict or a path) to what is stored."""
        return self.control("POST", "/seed", _seed_document(seed))

    def now(self) -> str:
        return self.control("GET", "/clock")["now"]

    def set_clock(self, when: str) -> str:
        """Fix the service's clock at `when` (ISO 8601); it stands still until moved or released."""
        return self.control("POST", "/clock", {"set": when})["now"]

    def advance_clock(self, seconds: float) -> str:
        return self.control("POST", "/clock", {"advance": seconds})["now"]

    def release_clock(self) -> str:
        return self.control("POST", "/clock", {"release": True})["now"]

    def fault(self, route: str, **fault) -> list:
        """Inject a fault on `route` ("GET /api/user/sessions"): status=, message=, delayMs=,
        jitterMs=, drop=True, times= (README, "Faults"); the faults now set."""
        return self.control("POST", "/faults", {"route": route, **fault})["faults"]

    def faults(self) -> list:
        return self.control("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self.control("DELETE", "/faults")

    def journal(self) -> list:
        """The requests received since the last reset, oldest first (README, "The journal")."""
        return self.control("GET", "/requests")["requests"]

    def control(self, method: str, path: str, body=None):
        """A /__test__/ call that must succeed: its JSON answer."""
        if self._http is None:
            import requests

            self._http = requests.Session()
        answer = self._http.request(method, f"{self.url}/__test__{path}", timeout=30,
                                    **({"json": body} if body is not None else {}))
        if answer.status_code != 200:
            raise AssertionError(f"zipline-sessions {method} /__test__{path}: {answer.status_code} "
                                 f"{answer.text.strip()}")
        return answer.json()


def launch_together(services: list[ZiplineSessions]) -> subprocess.Popen:
    """Start `services` (all on one command, each in a new folder) from one `zipline-sessions serve-each`, without
    waiting: the command imports the app once and forks each service (serve.py, serve_each).
    Each is watched as by launch_for_another_process. StartError if the command cannot be run."""
    first = services[0]
    spec_path, first.launcher_log = first.work / "serve-each.json", first.work / "serve-each.log"
    spec_path.write_text(json.dumps([{"environ": service.env, "log": str(service.log_path),
                                      "pid_file": str(service.pid_file), "exit_file": str(service.exit_file)}
                                     for service in services]))
    with open(first.launcher_log, "ab") as log:
        try:
            launcher = subprocess.Popen([first.command, "serve-each", str(spec_path)], env=first.env,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        except OSError as error:
            raise StartError(f"zipline-sessions: cannot run {first.command!r}: {error.strerror}") from None
    for service in services:
        service.launcher, service.launcher_log = launcher, first.launcher_log
        service._watch_start()
    return launcher


def stop_together(services: list[ZiplineSessions], launcher: subprocess.Popen) -> None:
    """Stop services started by launch_together, then their serve-each (which ends with them)."""
    for service in services:
        service.begin_stop()
    if any(service._forked_pid() is None for service in services):
        launcher.send_signal(signal.SIGTERM)  # some not forked yet: it forks no more, stops the rest
    for service in services:
        service.stop()
    try:
        launcher.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(launcher.pid, signal.SIGKILL)
        launcher.wait()


def _last_words(log_path: Path | None) -> str:
    """The line of a log that says why it stopped: its last refusal, else its last line."""
    text = log_path.read_bytes().decode("utf-8", "replace") if log_path is not None and log_path.exists() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    refusals = [line for line in lines if line.startswith(("zipline-sessions:", "Error:"))]
    return (refusals or lines or ["(no output)"])[-1].strip()


def _seed_document(seed):
    if seed is None or seed is False:
        return None
    if isinstance(seed, dict):
        return seed
    return json.loads(Path(seed).read_text())


def _signal_group(pid: int, number: int) -> None:
    try:
        os.killpg(pid, number)
    except ProcessLookupError:
        pass
