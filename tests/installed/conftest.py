"""The two distributions built from this checkout and installed as a test author would: the service
in a venv of its own (as pipx does), the plugin in a project's test venv, both outside the repository."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import ROOT

PLUGIN = ROOT / "plugin" / "pytest-zipline-sessions"
# What a test author's venv holds besides the plugin (pinned as in requirements-dev.txt).
CLIENT_PACKAGES = ["pytest==9.2.0", "pytest-xdist==3.8.0", "requests==2.34.2"]


def run(*command, **options) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], check=False, capture_output=True, text=True,
                            timeout=options.pop("timeout", 900), **options)
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


def outside_env(**extra) -> dict:
    """The environment of someone else's machine: none of this repository's settings or paths."""
    inherited = {key: value for key, value in os.environ.items()
                 if not key.startswith(("SESSIONS_", "ZIPLINE_SESSIONS_", "PYTEST_"))
                 and key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**inherited, **extra}


@pytest.fixture(scope="session")
def distributions(tmp_path_factory) -> dict:
    """sdist and wheel of the service (the wheel built from the sdist), and the plugin's wheel."""
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "-q", "-o", out / "service", ROOT, env=outside_env())
    run(sys.executable, "-m", "build", "-q", "--wheel", "-o", out / "plugin", PLUGIN, env=outside_env())
    return {"sdist": next((out / "service").glob("*.tar.gz")), "wheel": next((out / "service").glob("*.whl")),
            "plugin": next((out / "plugin").glob("*.whl"))}


@pytest.fixture(scope="session")
def service_venv(tmp_path_factory, distributions) -> Path:
    """A venv of the service's own, from its sdist (as `pipx install zipline-sessions-0.1.0.tar.gz`)."""
    venv = tmp_path_factory.mktemp("service") / "venv"
    run(sys.executable, "-m", "venv", venv, env=outside_env())
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", distributions["sdist"], env=outside_env())
    assert not venv.is_relative_to(ROOT)
    return venv


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory, distributions) -> Path:
    """A test author's venv: pytest, pytest-xdist, requests and the plugin; not the service."""
    venv = tmp_path_factory.mktemp("client") / "venv"
    run(sys.executable, "-m", "venv", venv, env=outside_env())
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", *CLIENT_PACKAGES, distributions["plugin"],
        env=outside_env())
    return venv


@pytest.fixture
def project(tmp_path) -> Path:
    """A client project: a copy of examples/ (its tests in pytest/, beside the seed)."""
    target = tmp_path / "client-project"
    run("cp", "-r", ROOT / "examples", target)
    return target


@pytest.fixture
def client_pytest(client_venv, service_venv, project):
    """Run the client venv's pytest in the project's pytest/ folder, the service's command on PATH."""
    def pytest_run(*args, path: str | None = None, env: dict | None = None, timeout: float = 600):
        search = f"{service_venv / 'bin'}{os.pathsep}{os.environ['PATH']}" if path is None else path
        return subprocess.run([str(client_venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider",
                               *args], check=False, cwd=project / "pytest", capture_output=True, text=True,
                              env=outside_env(PATH=search, **(env or {})), timeout=timeout)

    return pytest_run
