"""The fixture's times: start to first answer, a reset with a seed, and 40 tests serial against -n 2.

python bench/fixture.py [--runs 11] [--resets 200] [--workers 1] [--tests 40] [--rounds 5] [--skip-pytest]

Start: `python serve.py` (what `zipline-sessions serve` runs) on port 0 with test control, a ready
file and a new SQLite database, timed from the spawn to the first 200 of GET /api/health, with
and without SESSIONS_SEED_FILE=examples/seed.json; also the CPU time the service used meanwhile
(master and workers), which a loaded machine inflates less than the wall clock.
Reset: POST /__test__/reset with examples/seed.json, timed at the client, on a service started
with SESSIONS_SEED_FILE=examples/seed.json; every reset counts, each worker's first included.
Pytest: --tests tests (log in, list, revoke one) with pytest-zipline-sessions, run serially and
with pytest-xdist's -n 2 (each worker then has a service of its own, with one worker), --rounds
times each, alternated; the wall time of each whole run, pytest's start included.

The checkout's modules are first compiled to bytecode (python -m compileall, into their
__pycache__ folders), as an installed service has them: pip compiles at install. Python reads
them even with PYTHONDONTWRITEBYTECODE set (this project's VM sets it), which otherwise has every
start compile its 70-odd modules from source: about 50 ms more.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "examples" / "seed.json"
PLUGIN = ROOT / "plugin" / "pytest-zipline-sessions"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def start(work: Path, workers: int, seed_file: bool) -> tuple[subprocess.Popen, str, float, float]:
    """The service started; its base URL, the seconds to its first answer and the CPU seconds it used."""
    ready = work / "ready"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_")},
           "SESSIONS_BIND": "127.0.0.1:0", "SESSIONS_READY_FILE": str(ready), "SESSIONS_TEST_CONTROL": "true",
           "SESSIONS_DATABASE_URL": f"sqlite:///{work / 'sessions.db'}", "SESSIONS_WORKERS": str(workers),
           "SESSIONS_ACCESS_LOG": "off", **({"SESSIONS_SEED_FILE": str(SEED)} if seed_file else {})}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        if ready.exists() and (text := ready.read_text()).endswith("\n"):
            base = text.strip()
            try:
                if call(base, "GET", "/api/health")[0] == 200:
                    return server, base, time.perf_counter() - started, cpu_seconds(server.pid)
            except OSError:
                pass
        assert server.poll() is None, "the server exited"
        time.sleep(0.002)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of `pid` and its living children (the workers)."""
    pids = [pid] + [int(child) for task in Path(f"/proc/{pid}/task").glob("*/children")
                    for child in task.read_text().split()]
    total = 0
    for each in pids:
        fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(timeout=60)


def call(base: str, method: str, path: str, body: bytes | None = None):
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def bench_start(runs: int, workers: int) -> None:
    for seed_file in (False, True):
        times, cpu = [], []
        for _ in range(runs):
            with tempfile.TemporaryDirectory() as work:
                server, _, took, used = start(Path(work), workers, seed_file)
                stop(server)
                times.append(took)
                cpu.append(used)
        label = "SESSIONS_SEED_FILE=examples/seed.json" if seed_file else "no seed"
        print(f"start to first answer ({workers} worker(s), new SQLite database, {label}): median "
              f"{statistics.median(times):.3f} s (min {min(times):.3f}, max {max(times):.3f}) over {runs}; "
              f"CPU used meanwhile: median {statistics.median(cpu):.2f} s")


def bench_reset(resets: int, workers: int) -> None:
    seed = SEED.read_bytes()
    with tempfile.TemporaryDirectory() as work:
        server, base, _, _ = start(Path(work), workers, True)
        try:
            times = []
            for _ in range(resets):
                began = time.perf_counter()
                status, body = call(base, "POST", "/__test__/reset", seed)
                times.append(time.perf_counter() - began)
                assert status == 200, body
        finally:
            stop(server)
    users = json.loads(body)["users"]
    first = times[: 2 * workers]
    print(f"reset with examples/seed.json ({users} users, {workers} worker(s), loaded at start through "
          f"SESSIONS_SEED_FILE): median {statistics.median(times) * 1000:.1f} ms, p99 "
          f"{statistics.quantiles(times, n=100)[-1] * 1000:.1f} ms over {len(times)} (every reset counted); "
          f"the first {len(first)}: max {max(first) * 1000:.1f} ms")


TEST_MODULE = '''
import pytest

@pytest.mark.parametrize("n", range({tests}))
def test_login_list_revoke(zipline_login, n):
    theo = zipline_login("theo", "hunter2-but-longer")
    listed = theo.get("/api/user/sessions").json()
    assert len(listed["other"]) == 3
    gone = theo.delete("/api/user/sessions", json={{"sessionId": listed["other"][0]["id"]}})
    assert gone.status_code == 200 and len(gone.json()["other"]) == 2
'''


def bench_pytest(tests: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        project = Path(work)
        command = project / "zipline-sessions"  # the command, as installing would make it, on this checkout
        command.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                           "from zipline_sessions.command import main\nmain()\n")
        command.chmod(0o755)
        (project / "test_sessions.py").write_text(TEST_MODULE.format(tests=tests))
        (project / "pytest.ini").write_text(f"[pytest]\nzipline_sessions_seed = {SEED}\n"
                                            f"zipline_sessions_command = {command}\n")
        # Only the plugins a test author's venv holds (this venv's hypothesis, schemathesis, ...
        # would be imported again by each xdist worker).
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_")},
               "PYTHONPATH": str(PLUGIN), "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
        walls = {"serially": [], "with -n 2": []}
        for _ in range(rounds):  # alternated, so that a machine's drift weighs on both alike
            for label, extra in (("serially", []), ("with -n 2", ["-n", "2"])):
                began = time.perf_counter()
                result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "xdist",
                                         "-p", "pytest_zipline_sessions.plugin", *extra], check=False, cwd=project,
                                        env=env, capture_output=True, text=True, timeout=900)
                walls[label].append(time.perf_counter() - began)
                assert result.returncode == 0, result.stdout + result.stderr
        for label, times in walls.items():
            print(f"{tests} tests of login, list and revoke {label}: median {statistics.median(times):.2f} s over "
                  f"{rounds} runs ({', '.join(f'{t:.2f}' for t in times)})")
        pairs = [parallel < serial for serial, parallel in zip(walls["serially"], walls["with -n 2"])]
        print(f"-n 2 faster than the serial run just before it in {sum(pairs)} of {rounds} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--resets", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5, help="runs of the pytest suite, each way")
    parser.add_argument("--skip-pytest", action="store_true")
    args = parser.parse_args()
    compile_service()
    bench_start(args.runs, args.workers)
    bench_reset(args.resets, args.workers)
    if not args.skip_pytest:
        bench_pytest(args.tests, args.rounds)


def compile_service() -> None:
    """The checkout's modules compiled to bytecode (their __pycache__ folders), as installed."""
    sources = [str(ROOT / name) for name in ("app.py", "cli.py", "models.py", "schemas.py", "serve.py",
                                             "zipline_sessions")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *sources], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
