"""The service installed from its sdist into a venv of its own: the zipline-sessions command serves
and runs the commands, and nothing with a common name lands on the venv's import path."""

import json
import subprocess
import time
import tomllib
import urllib.request

from live_server import ROOT

from installed.conftest import outside_env, run

COMMON_NAMES = ["app", "models", "schemas", "cli", "serve", "settings", "migrations", "web", "storage", "config"]


def test_the_distribution_depends_on_exactly_the_pins_of_requirements_txt():
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"] == pins


def test_installing_puts_only_the_zipline_sessions_package_on_the_import_path(service_venv):
    probe = ("import importlib.util, json, sys; "
             f"print(json.dumps({{name: importlib.util.find_spec(name) is not None for name in {COMMON_NAMES!r}}}))")
    found = json.loads(run(service_venv / "bin" / "python", "-c", probe, cwd="/", env=outside_env()).stdout)
    assert found == dict.fromkeys(COMMON_NAMES, False)
    for name in ("app", "models"):
        failed = subprocess.run([str(service_venv / "bin" / "python"), "-c", f"import {name}"], cwd="/",
                                capture_output=True, text=True, env=outside_env(), check=False)
        assert failed.returncode == 1 and f"No module named '{name}'" in failed.stderr
    run(service_venv / "bin" / "python", "-c", "import zipline_sessions.command", cwd="/", env=outside_env())


def test_the_command_serves_seeds_creates_users_and_checks(service_venv, tmp_path):
    command = str(service_venv / "bin" / "zipline-sessions")
    env = outside_env(SESSIONS_DATABASE_URL=f"sqlite:///{tmp_path / 'sessions.db'}", SESSIONS_BIND="127.0.0.1:0",
                      SESSIONS_READY_FILE=str(tmp_path / "ready"), SESSIONS_WORKERS="1")
    seed = tmp_path / "seed.json"
    seed.write_text(json.dumps({"users": [{"username": "sam", "token": "tok-sam", "sessions": [{"ua": "curl/8"}]}]}))
    # Run from an unrelated folder: migrations/ and the modules come from inside the distribution.
    assert "Seeded 1 users and 1 sessions." in run(command, "seed", seed, cwd=tmp_path, env=env).stdout
    token = run(command, "create-user", "ada", "--password", "long-enough-pass", cwd=tmp_path,
                env=env).stdout.split()[-1]
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen([command, "serve"], cwd=tmp_path, env=env, stdout=log, stderr=log,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "ready").exists():
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        base = (tmp_path / "ready").read_text().strip()
        with urllib.request.urlopen(base + "/api/health", timeout=30) as answer:
            assert json.load(answer) == {"status": "ok"}
        checked = subprocess.run([command, "check", base, "--token", token], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=120, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        listed = run(command, "list-sessions", "sam", "--json", cwd=tmp_path, env=env).stdout
        assert [session["ua"] for session in json.loads(listed)] == ["curl/8"]
    finally:
        server.terminate()
        assert server.wait(timeout=60) == 0
