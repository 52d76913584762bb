"""`zipline-sessions serve-each SPEC`: several services from one start (the pytest plugin's, one per
xdist worker), each its own master with its own settings, database and log; stopped together."""

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from live_server import ROOT, wait_for

COMMAND = [sys.executable, "-c", "from zipline_sessions.command import main; main()", "serve-each"]


def spec_for(folder: Path, **settings) -> dict:
    folder.mkdir()
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_")},
               "SESSIONS_BIND": "127.0.0.1:0", "SESSIONS_TEST_CONTROL": "true", "SESSIONS_WORKERS": "1",
               "SESSIONS_READY_FILE": str(folder / "ready"), "SESSIONS_PARENT_PID": str(os.getpid()),
               "SESSIONS_DATABASE_URL": f"sqlite:///{folder / 'sessions.db'}", **settings}
    return {"environ": environ, "log": str(folder / "log"), "pid_file": str(folder / "pid"),
            "exit_file": str(folder / "exited")}


def launch(tmp_path: Path, specs: list[dict]) -> subprocess.Popen:
    spec_file = tmp_path / "services.json"
    spec_file.write_text(json.dumps(specs))
    with open(tmp_path / "serve-each.log", "ab") as log:  # its own words, apart from its services'
        return subprocess.Popen([*COMMAND, str(spec_file)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def status_of(url: str, body: dict) -> int:
    try:
        post(url, body)
    except urllib.error.HTTPError as error:
        return error.code
    return 200


def refusal_of(url: str) -> dict:
    try:
        get(url)
    except urllib.error.HTTPError as error:
        return json.loads(error.read())
    raise AssertionError(f"{url} served without a session")


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def test_each_service_is_its_own_and_all_stop_together(tmp_path):
    specs = [spec_for(tmp_path / name, SESSIONS_ERROR_PROFILE=profile)
             for name, profile in (("one", "contract"), ("two", "zipline-v4"))]
    launcher = launch(tmp_path, specs)
    try:
        for spec in specs:
            wait_for(lambda spec=spec: Path(spec["environ"]["SESSIONS_READY_FILE"]).exists(), "each service's ready file")
        urls = [Path(spec["environ"]["SESSIONS_READY_FILE"]).read_text().strip() for spec in specs]
        assert len(set(urls)) == 2
        masters = [int(Path(spec["pid_file"]).read_text()) for spec in specs]
        # Forked by serve-each, each a session (and process group) of its own, as `serve` is.
        assert [parent_of(pid) for pid in masters] == [launcher.pid, launcher.pid]
        assert [os.getsid(pid) for pid in masters] == masters
        # Each has its own database and its own settings.
        post(f"{urls[0]}/__test__/seed", {"users": [{"username": "only-in-one", "password": "a-long-password"}]})
        login = {"username": "only-in-one", "password": "a-long-password"}
        statuses = [status_of(f"{url}/api/auth/login", login) for url in urls]
        assert statuses[0] == 200 and statuses[1] in (400, 401), statuses  # unknown there (each profile's status)
        contract, zipline_v4 = (refusal_of(f"{url}/api/user/sessions") for url in urls)
        assert contract == {"statusCode": 401, "error": "Unauthorized", "message": contract["message"]}
        assert zipline_v4 != contract
        for spec in specs:
            assert "zipline-sessions: ready at" in Path(spec["log"]).read_text()
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
        assert [Path(spec["exit_file"]).read_text() for spec in specs] == ["0\n", "0\n"]
        for pid in masters:
            assert not Path(f"/proc/{pid}").exists()
        assert (tmp_path / "serve-each.log").read_text() == ""
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


def test_a_service_that_cannot_start_leaves_the_others_running(tmp_path):
    specs = [spec_for(tmp_path / "bad", SESSIONS_TTL_SECONDS="-5"), spec_for(tmp_path / "good")]
    launcher = launch(tmp_path, specs)
    try:
        wait_for(lambda: Path(specs[0]["exit_file"]).exists(), "the bad service's exit status")
        assert Path(specs[0]["exit_file"]).read_text() == "2\n"
        [line] = Path(specs[0]["log"]).read_text().strip().splitlines()  # one line, as `serve` says it
        assert line.startswith("zipline-sessions: SESSIONS_TTL_SECONDS "), line
        wait_for(lambda: Path(specs[1]["environ"]["SESSIONS_READY_FILE"]).exists(), "the good service's ready file")
        assert get(Path(specs[1]["environ"]["SESSIONS_READY_FILE"]).read_text().strip() + "/api/health")
        assert launcher.poll() is None
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 1  # one of its services failed
        assert Path(specs[1]["exit_file"]).read_text() == "0\n"
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


def test_its_services_stop_when_the_process_named_as_their_parent_is_gone(tmp_path):
    """As the plugin's: SESSIONS_PARENT_PID names pytest, not serve-each; once it is gone the services
    stop, and serve-each ends with them."""
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    specs = [spec_for(tmp_path / name, SESSIONS_PARENT_PID=str(runner.pid)) for name in ("one", "two")]
    launcher = launch(tmp_path, specs)
    try:
        for spec in specs:
            wait_for(lambda spec=spec: Path(spec["environ"]["SESSIONS_READY_FILE"]).exists(), "each service's ready file")
        runner.kill()
        runner.wait()
        assert launcher.wait(timeout=30) == 0
        assert [Path(spec["exit_file"]).read_text() for spec in specs] == ["0\n", "0\n"]
    finally:
        for process in (runner, launcher):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL) if process is launcher else process.kill()
                process.wait()


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    ("not json", "is not JSON"),
    ("[]", "must hold a list of services, one or more"),
    ('[{"environ": {}, "log": "l", "pid_file": "p"}]', "services[0] must be an object with exactly"),
    ('[{"environ": {"A": 1}, "log": "l", "pid_file": "p", "exit_file": "e"}]', "services[0].environ must map"),
    ('[{"environ": {}, "log": "", "pid_file": "p", "exit_file": "e"}]', "services[0].log must be a path"),
    ('[{"environ": {}, "log": "l", "pid_file": "/nowhere/p", "exit_file": "e"}]',
     "services[0].pid_file: no folder /nowhere"),
    (('[{"environ": {}, "log": "l", "pid_file": "p", "exit_file": "e"},'
      ' {"environ": {}, "log": "l2", "pid_file": "p2", "exit_file": "./p"}]'),
     "services[1].exit_file is also services[0].pid_file: ./p"),
])
def test_a_bad_spec_is_one_line_and_starts_nothing(tmp_path, content, message):
    spec_file = tmp_path / "services.json"
    if content is not None:
        spec_file.write_text(content)
    result = subprocess.run([*COMMAND, str(spec_file)], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("zipline-sessions: serve-each: ") and message in line, line
    assert not list(tmp_path.glob("*")) or list(tmp_path.glob("*")) == [spec_file]


def test_serve_each_takes_exactly_one_argument():
    result = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "zipline-sessions: serve-each: give one argument, a JSON file listing the services"
