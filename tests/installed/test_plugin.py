"""pytest-zipline-sessions installed in a test author's venv outside the repository, the service in
a venv of its own: examples/ are its tests; bad input fails in one line; a failing test carries
the service's log; the service never outlives pytest, even a SIGKILLed one."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from installed.conftest import outside_env

WORKER_PID_TEST = """
import os, time
def test_hold_the_service(zipline_sessions):
    # Its master: started by this process, or (under xdist) forked by the controller's serve-each.
    master = zipline_sessions.process.pid if zipline_sessions.process else (zipline_sessions.work / "pid").read_text()
    with open(os.environ["PID_FILE"], "w") as out:
        out.write(f"{int(master)} {zipline_sessions.work}")
    time.sleep(600)
"""


def test_the_examples_pass_as_the_plugins_own_tests(client_pytest):
    result = client_pytest("-q")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 passed" in result.stdout


def test_under_xdist_each_worker_has_its_own_one_worker_service(client_pytest, project, tmp_path):
    """The controller launches each worker's service as the run begins, all from one serve-each;
    each worker uses its own, and none is left running, nor its folder, when pytest ends."""
    record = tmp_path / "services.txt"
    (project / "pytest" / "test_workers.py").write_text(
        "import os\n"
        "def test_one_worker(zipline_sessions):\n"
        "    assert zipline_sessions.env['SESSIONS_WORKERS'] == '1'\n"
        "    master = (zipline_sessions.work / 'pid').read_text().strip()\n"
        "    status = open(f'/proc/{master}/status').read()\n"
        "    parent = next(line.split()[1] for line in status.splitlines() if line.startswith('PPid:'))\n"
        "    parent_command = open(f'/proc/{parent}/cmdline').read().split('\\0')[1:3]\n"
        "    with open(os.environ['RECORD'], 'a') as out:\n"
        "        out.write(f\"{os.environ['PYTEST_XDIST_WORKER']} {zipline_sessions.url} {zipline_sessions.work} \"\n"
        "                  f\"{parent} {'/'.join(parent_command)}\\n\")\n"
        "def test_another(zipline_sessions):\n"
        "    test_one_worker(zipline_sessions)\n")
    # --dist each: every worker runs every test (the examples too), so both record their service.
    result = client_pytest("-q", "-n", "2", "--dist", "each", "--zipline-sessions-workers", "3",
                           env={"RECORD": str(record)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "26 passed" in result.stdout
    lines = [line.split() for line in record.read_text().splitlines()]
    services = {(url, folder) for _worker, url, folder, _parent, _command in lines}
    by_worker = {worker: {(url, folder) for each, url, folder, *_ in lines if each == worker} for worker, *_ in lines}
    assert sorted(by_worker) == ["gw0", "gw1"] and all(len(seen) == 1 for seen in by_worker.values()), by_worker
    assert len(services) == 2 and len({url for url, _folder in services}) == 2, services  # one service each
    # Both forked by one `zipline-sessions serve-each` (not by the controller, as each used to be),
    # which imported the app once for them.
    assert len({parent for *_, parent, _command in lines}) == 1, lines
    assert {command.rpartition("/")[0].endswith("zipline-sessions") and command.endswith("/serve-each")
            for *_, command in lines} == {True}, lines
    for _url, folder in services:
        assert not Path(folder).exists()
        assert not _processes_naming(folder), "a service outlived pytest"


def _processes_naming(text: str) -> list[int]:
    """The processes whose environment mentions `text` (a service's folder is in its settings)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if text.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def test_a_failing_test_carries_the_services_log_of_that_test(client_pytest, project):
    (project / "pytest" / "test_fails.py").write_text(
        "def test_passes(zipline_sessions):\n"
        "    assert zipline_sessions.session().get('/api/health').status_code == 200\n"
        "def test_fails(zipline_sessions):\n"
        "    zipline_sessions.session().get('/api/user/sessions?secret=no')\n"
        "    assert False\n")
    result = client_pytest("-q", "test_fails.py")
    assert result.returncode == 1
    log = result.stdout.partition("Captured zipline-sessions log call")[2]
    assert '"GET /api/user/sessions HTTP/1.1" 401' in log
    assert "secret" not in log  # the access log never holds a query string
    assert "/api/health" not in log  # the log of this test only
    assert result.stdout.count("Captured zipline-sessions log") == 1  # a passing test carries none


@pytest.mark.parametrize(("args", "message"), [
    (["--zipline-sessions-workers", "none"], ("ERROR: zipline-sessions: workers must be a whole number (1 or more), "
                                             "not 'none'")),
    (["--zipline-sessions-port", "70000"], ("ERROR: zipline-sessions: port must be a whole number (0-65535), "
                                           "not '70000'")),
    (["--zipline-sessions-scope", "class"], ("ERROR: zipline-sessions: scope must be one of function, module, "
                                            "session, not 'class'")),
    (["--zipline-sessions-seed", "missing.json"], "ERROR: zipline-sessions: cannot read the seed file"),
    (["--zipline-sessions-command", "/nowhere/zipline-sessions"],
     "ERROR: zipline-sessions: the command '/nowhere/zipline-sessions' is not an executable file"),
])
def test_a_bad_option_stops_the_run_in_one_line(client_pytest, args, message):
    result = client_pytest("-q", *args)
    assert result.returncode == 4
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serially", "under xdist"])
def test_a_seed_the_service_refuses_fails_each_test_in_one_line(client_pytest, project, xdist):
    (project / "bad-seed.json").write_text(json.dumps({"users": [{"username": "ok"}, {"username": "ok"}]}))
    result = client_pytest("-q", "--zipline-sessions-seed", "../bad-seed.json", "-k", "seed_is_there", *xdist)
    assert result.returncode == 1
    assert ("zipline-sessions did not start (exit status 2): zipline-sessions: SESSIONS_SEED_FILE refused, nothing "
            "stored: users[1].username: 'ok' repeats users[0].username") in result.stdout


def test_a_missing_command_is_one_line_naming_the_ways_to_give_it(client_pytest, project):
    result = client_pytest("-q", "-k", "seed_is_there", path="/usr/bin:/bin")
    assert result.returncode == 1
    assert "no zipline-sessions command on PATH; install the service" in result.stdout


def test_the_command_is_found_by_environment_variable_and_by_ini(client_pytest, service_venv, project):
    command = str(service_venv / "bin" / "zipline-sessions")
    by_env = client_pytest("-q", "-k", "seed_is_there", path="/usr/bin:/bin",
                           env={"ZIPLINE_SESSIONS_COMMAND": command})
    assert by_env.returncode == 0, by_env.stdout + by_env.stderr
    ini = project / "pytest" / "pytest.ini"
    ini.write_text(ini.read_text() + f"zipline_sessions_command = {command}\n")
    by_ini = client_pytest("-q", "-k", "seed_is_there", path="/usr/bin:/bin")
    assert by_ini.returncode == 0, by_ini.stdout + by_ini.stderr


def test_the_error_profile_option_reaches_the_service(client_pytest, project):
    (project / "pytest" / "test_profile.py").write_text(
        "def test_profile(zipline_sessions):\n"
        "    assert zipline_sessions.session().get('/api/user/sessions').json()['code'] == 2000\n")
    result = client_pytest("-q", "test_profile.py", "--zipline-sessions-error-profile", "zipline-v4")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serially", "under xdist"])
def test_the_service_ends_when_pytest_is_sigkilled(client_venv, service_venv, project, tmp_path, xdist):
    """Under xdist the controller is SIGKILLed: the workers' services and their serve-each end too."""
    (project / "pytest" / "test_hold.py").write_text(WORKER_PID_TEST)
    pid_file = tmp_path / "service.pid"
    temporary = Path(tempfile.gettempdir())
    folders_before = set(temporary.glob("zipline-sessions-gw*"))
    env = outside_env(PATH=f"{service_venv / 'bin'}{os.pathsep}{os.environ['PATH']}", PID_FILE=str(pid_file))
    runner = subprocess.Popen([str(client_venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "test_hold.py", *xdist], cwd=project / "pytest", env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert runner.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    service, folder = pid_file.read_text().split()
    assert _group_alive(int(service))
    runner.send_signal(signal.SIGKILL)  # no cleanup runs in pytest
    runner.wait()
    deadline = time.monotonic() + 60
    left = set(temporary.glob("zipline-sessions-gw*")) - folders_before  # each xdist worker's service's
    assert bool(left) == bool(xdist) and (not xdist or Path(folder) in left), (left, folder)
    while _group_alive(int(service)) or any(_processes_naming(str(each)) for each in left):
        assert time.monotonic() < deadline, "a service outlived pytest"
        time.sleep(0.1)
    for each in left:
        shutil.rmtree(each)  # the controller's temporary folders: nobody was left to remove them


def _group_alive(group: int) -> bool:
    """Whether any live (not zombie) process is in process group `group`."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_recipe_runs_on_the_same_command_and_leaves_no_temporary_folder(service_venv, project, tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run(["node", "--test", "sessions.test.mjs"], check=False, cwd=project / "node",
                            env=outside_env(PATH=f"{service_venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
                                            TMPDIR=str(scratch)),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 2" in result.stdout and "# fail 0" in result.stdout
    assert list(scratch.iterdir()) == []
