"""The fixture's two times: start to first answer, and a reset with the example seed.

python bench/fixture.py [--runs 5] [--resets 50] [--workers 2]

Start: `python serve.py` on port 0 with test control and a ready file, timed from the spawn to
the first 200 of GET /api/health (SQLite, a new database: migrations included), with and without
SESSIONS_SEED_FILE=examples/seed.json. Reset: POST /__test__/reset with examples/seed.json,
timed at the client; the first reset in each worker hashes the seed's passwords, later ones
reuse the hashes, so the first is reported apart.
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


def start(work: Path, workers: int, seed_file: bool) -> tuple[subprocess.Popen, str, float]:
    ready = work / "ready"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_")},
           "SESSIONS_BIND": "127.0.0.1:0", "SESSIONS_READY_FILE": str(ready), "SESSIONS_TEST_CONTROL": "true",
           "SESSIONS_DATABASE_URL": f"sqlite:///{work / 'sessions.db'}", "SESSIONS_WORKERS": str(workers),
           "SESSIONS_ACCESS_LOG": "off", **({"SESSIONS_SEED_FILE": str(SEED)} if seed_file else {})}
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    while True:
        if ready.exists() and (text := ready.read_text()).endswith("\n"):
            base = text.strip()
            try:
                if call(base, "GET", "/api/health")[0] == 200:
                    return server, base, time.perf_counter() - started
            except OSError:
                pass
        assert server.poll() is None, "the server exited"
        time.sleep(0.005)


def call(base: str, method: str, path: str, body: bytes | None = None):
    host, port = base.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--resets", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seed = SEED.read_bytes()
    for seed_file in (False, True):
        times = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as work:
                server, _, took = start(Path(work), args.workers, seed_file)
                server.terminate()
                server.wait(timeout=30)
                times.append(took)
        label = "with SESSIONS_SEED_FILE" if seed_file else "empty database"
        print(f"start to first answer ({args.workers} workers, {label}): median {statistics.median(times):.2f} s, "
              f"min {min(times):.2f} s, max {max(times):.2f} s")
    with tempfile.TemporaryDirectory() as work:
        server, base, _ = start(Path(work), args.workers, False)
        try:
            firsts, resets = [], []
            for index in range(args.resets + 2 * args.workers):
                began = time.perf_counter()
                status, body = call(base, "POST", "/__test__/reset", seed)
                assert status == 200, body
                (firsts if index < 2 * args.workers else resets).append(time.perf_counter() - began)
            users = json.loads(body)["users"]
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"reset with examples/seed.json ({users} users): median {statistics.median(resets) * 1000:.0f} ms, "
          f"p90 {statistics.quantiles(resets, n=10)[-1] * 1000:.0f} ms over {len(resets)}; the first ones "
          f"(each worker hashing the passwords once): max {max(firsts) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
