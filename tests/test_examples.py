"""examples/ run as another project would: its own directory outside this repository, its own
virtual environment with only pytest in it, the service started by the example conftest.py."""

import os
import shutil
import subprocess
import sys

import pytest
from live_server import ROOT

EXAMPLES = ROOT / "examples"
PYTEST = "pytest==9.2.0"


def project_env() -> dict:
    """The environment of the other project: where zipline-sessions is and which Python runs it;
    none of this repository's SESSIONS_* settings."""
    inherited = {key: value for key, value in os.environ.items()
                 if not key.startswith("SESSIONS_") and key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**inherited, "ZIPLINE_SESSIONS_DIR": str(ROOT), "ZIPLINE_SESSIONS_PYTHON": sys.executable}


def test_the_example_conftest_runs_in_a_project_of_its_own(tmp_path):
    project = tmp_path / "client-project"
    (project / "tests").mkdir(parents=True)
    for name in ("conftest.py", "test_with_zipline_sessions.py"):
        shutil.copy(EXAMPLES / name, project / "tests" / name)
    subprocess.run([sys.executable, "-m", "venv", str(project / ".venv")], check=True, timeout=300)
    python = project / ".venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", PYTEST], check=True, timeout=300)
    result = subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], check=False,
                            cwd=project,
                            env=project_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout
    assert str(ROOT) not in str(python.resolve()) and not project.is_relative_to(ROOT)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_node_recipe_runs_with_node_test(tmp_path):
    shutil.copy(EXAMPLES / "node" / "sessions.test.mjs", tmp_path / "sessions.test.mjs")
    result = subprocess.run(["node", "--test", "sessions.test.mjs"], check=False, cwd=tmp_path, env=project_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# pass 1" in result.stdout and "# fail 0" in result.stdout
