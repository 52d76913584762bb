"""pytest fixtures for a project whose tests talk to zipline-sessions: copy this file next to your tests.

One service per test run (port 0, two workers, a throwaway SQLite file), reset to the seed before
each test, stopped at the end. Standard library only: your project needs nothing but pytest.

  ZIPLINE_SESSIONS_DIR     where zipline-sessions is checked out (required)
  ZIPLINE_SESSIONS_PYTHON  its Python (default: $ZIPLINE_SESSIONS_DIR/.venv/bin/python)
  ZIPLINE_SESSIONS_SEED    the seed document loaded before each test (default: its examples/seed.json)
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

SERVICE_DIR = Path(os.environ["ZIPLINE_SESSIONS_DIR"])
PYTHON = os.environ.get("ZIPLINE_SESSIONS_PYTHON", str(SERVICE_DIR / ".venv" / "bin" / "python"))
SEED = json.loads(Path(os.environ.get("ZIPLINE_SESSIONS_SEED", SERVICE_DIR / "examples" / "seed.json")).read_text())


class ZiplineSessions:
    """The running service: `call` for its API, `control` for /__test__/."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def call(self, method: str, path: str, body=None, headers: dict | None = None):
        """(status, headers, parsed JSON body); an error status is an answer, not an exception."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={**({"Content-Type": "application/json"} if data else {}),
                                                  **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, json.loads(response.read() or "null")
        except urllib.error.HTTPError as error:
            return error.code, error.headers, json.loads(error.read() or "null")

    def control(self, method: str, path: str, body=None):
        """A /__test__/ call that must succeed: its JSON answer."""
        status, _, answer = self.call(method, "/__test__" + path, body)
        assert status == 200, answer
        return answer


@pytest.fixture(scope="session")
def zipline_sessions(tmp_path_factory):
    """Start the service on a free port and wait for it; stop it when the run ends."""
    work = tmp_path_factory.mktemp("zipline-sessions")
    ready = work / "ready"
    env = {**os.environ, "SESSIONS_BIND": "127.0.0.1:0", "SESSIONS_READY_FILE": str(ready),
           "SESSIONS_TEST_CONTROL": "true", "SESSIONS_DATABASE_URL": f"sqlite:///{work / 'sessions.db'}",
           "SESSIONS_WORKERS": "2", "SESSIONS_ACCESS_LOG": "off"}
    with open(work / "server.log", "wb") as log:
        server = subprocess.Popen([PYTHON, "serve.py"], cwd=SERVICE_DIR, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while not ready.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("zipline-sessions did not start:\n" + (work / "server.log").read_text())
        time.sleep(0.02)
    yield ZiplineSessions(ready.read_text().strip())
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(autouse=True)
def fresh_sessions(zipline_sessions):
    """Each test starts from the seed: no other data, no fault, real time, an empty journal."""
    zipline_sessions.control("POST", "/reset", SEED)
    return zipline_sessions
