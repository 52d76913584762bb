"""flask --app app check URL: the contract's checks against a running server, this one or another."""

import contextlib
import http.server
import json
import os
import subprocess
import sys

import pytest
from conftest import SEED
from live_server import ROOT, LiveServer, loopback_http_server

SESSIONS = "/api/user/sessions"
ALICE = {"Authorization": "tok-alice"}


@pytest.fixture
def server(tmp_path, database_url):
    live = LiveServer(tmp_path, database_url, SEED, workers=2).start()
    yield live
    live.stop()


def check(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The command as a user runs it (the app it loads is a scratch one: it only needs the CLI)."""
    return subprocess.run([sys.executable, "-m", "flask", "--app", "app", "check", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def scratch_env(tmp_path) -> dict:
    """For checking another server: the flask command still loads this app, on a scratch database."""
    return {**os.environ, "SESSIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'scratch.db'}"}


def rows(output: str) -> dict:
    """check name -> (result, detail) from the printed table."""
    table = {}
    for line in output.splitlines()[2:-1]:
        name, result, *detail = [part for part in line.split("  ") if part]
        table[name.strip()] = (result.strip(), " ".join(detail).strip())
    return table


def listing(server):
    return server.request("GET", SESSIONS, ALICE)[2]


def test_this_service_passes_every_check_and_nothing_is_revoked(server):
    before = listing(server)
    result = check(server.base_url, "--token", "tok-alice", "--cookie", "cookie-abc", env=server.env)
    assert result.returncode == 0, result.stdout + result.stderr
    table = rows(result.stdout)
    assert [outcome for outcome, _ in table.values()] == ["PASS"] * 6 + ["SKIP"]
    assert table["DELETE one other session (--allow-writes)"] == ("SKIP", "not asked (--allow-writes)")
    assert listing(server) == before and len(before["other"]) == 2


def test_without_a_cookie_the_current_session_check_is_skipped(server):
    result = check(server.base_url, "--token", "tok-alice", env=server.env)
    assert result.returncode == 0, result.stdout
    assert rows(result.stdout)["DELETE the current session: 400, refused"][0] == "SKIP"


def test_allow_writes_revokes_one_other_session(server):
    result = check(server.base_url, "--token", "tok-alice", "--cookie", "zipline_token=cookie-abc",
                   "--allow-writes", env=server.env)
    assert result.returncode == 0, result.stdout
    assert rows(result.stdout)["DELETE one other session (--allow-writes)"] == ("PASS", "revoked sess_def456")
    assert [session["id"] for session in listing(server)["other"]] == ["sess_abc123"]


def test_the_zipline_v4_profile_is_checked_in_its_own_shape(tmp_path, database_url):
    live = LiveServer(tmp_path, database_url, SEED, workers=2, env={"SESSIONS_ERROR_PROFILE": "zipline-v4"}).start()
    try:
        args = (live.base_url, "--token", "tok-alice", "--cookie", "cookie-abc")
        assert check(*args, "--profile", "zipline-v4", env=live.env).returncode == 0
        contract = check(*args, env=live.env)  # expecting the contract's shape from a zipline-v4 server
        assert contract.returncode == 1
        assert rows(contract.stdout)["GET without credentials: 401 Invalid login session"][0] == "FAIL"
    finally:
        live.stop()


# A deliberately wrong server: right statuses, but a wrong message and a createdAt without milliseconds.
WRONG_LIST = {"current": None, "other": [{"id": "sess_1", "createdAt": "2024-03-15T10:30:00Z", "ua": "curl/8",
                                          "client": "curl", "device": "Unknown"}]}


class WrongServer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization"):
            self.answer(200, WRONG_LIST)
        else:
            self.answer(401, {"statusCode": 401, "error": "Unauthorized", "message": "Invalid login session"})

    def do_DELETE(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer(400, {"statusCode": 400, "error": "Bad Request", "message": "No such session"})

    def answer(self, status, body):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def wrong_server():
    with loopback_http_server(WrongServer) as port:
        yield f"http://127.0.0.1:{port}"


def test_a_wrong_server_fails_and_the_table_names_what_differs(tmp_path):
    env = scratch_env(tmp_path)
    with wrong_server() as url:
        result = check(url, "--token", "anything", env=env)
    assert result.returncode == 1
    table = rows(result.stdout)
    assert table["GET with credentials: 200, {current, other}, Session fields"][0] == "FAIL"
    assert "createdAt is not ISO 8601" in table["GET with credentials: 200, {current, other}, Session fields"][1]
    assert table["DELETE an unknown sessionId: 400 Session not found"][0] == "FAIL"
    assert "'No such session'" in table["DELETE an unknown sessionId: 400 Session not found"][1]
    assert table["GET without credentials: 401 Invalid login session"][0] == "PASS"
    assert table["DELETE with neither sessionId nor all: 400"][0] == "PASS"
    assert result.stdout.splitlines()[-1] == "2 passed, 2 failed, 3 skipped"


def test_a_server_that_does_not_answer_is_a_failure_not_a_crash(tmp_path):
    env = scratch_env(tmp_path)
    with wrong_server() as url:
        pass  # closed: nothing listens on its port any more
    result = check(url, "--token", "anything", env=env)
    assert result.returncode == 1
    assert "no answer" in result.stdout and "Traceback" not in result.stderr
