"""How long `flask --app app backup` takes on a live SQLite database, and what it costs the writes
that go on meanwhile.

python bench/backup.py [--users 20000] [--sessions 10] [--writers 4]

Seeds USERS x SESSIONS (bench/make_seed.py), starts `python serve.py` (2 workers), and runs WRITERS
clients that each revoke one of their user's sessions per request (DELETE /api/user/sessions, a
write transaction with synchronous=FULL). Prints the revocations' latency (p50, p99, worst) for
5 s before the backup and during it, and the backup's time and size.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SESSIONS_")},
               "SESSIONS_DATABASE_URL": f"sqlite:///{work / 'live.db'}", "SESSIONS_BIND": "127.0.0.1:0",
               "SESSIONS_READY_FILE": str(work / "ready"), "SESSIONS_WORKERS": "2", "SESSIONS_ACCESS_LOG": "off",
               "SESSIONS_LOGIN_RATE_LIMIT": "off"}
        subprocess.run([sys.executable, "bench/make_seed.py", str(args.users), str(args.sessions),
                        str(work / "seed.json")], cwd=ROOT, check=True)
        flask = [sys.executable, "-m", "flask", "--app", "app"]
        subprocess.run([*flask, "seed", str(work / "seed.json")], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        server = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            while not (work / "ready").exists():
                time.sleep(0.05)
            host, port = (work / "ready").read_text().strip().removeprefix("http://").rsplit(":", 1)
            latencies, phase, stop = {"before": [], "during": []}, ["before"], threading.Event()

            def revoke(n: int) -> None:
                k = 1
                while not stop.is_set() and k < args.sessions:
                    connection = http.client.HTTPConnection(host, int(port), timeout=60)
                    body = json.dumps({"sessionId": f"sess_{n}_{k}"})
                    started = time.perf_counter()
                    connection.request("DELETE", "/api/user/sessions", body=body, headers={
                        "Authorization": f"tok-{n}", "Content-Type": "application/json"})
                    status = connection.getresponse().status
                    latencies[phase[0]].append(time.perf_counter() - started)
                    connection.close()
                    if status != 200:
                        raise SystemExit(f"revocation answered {status}")
                    k += 1
                    if k == args.sessions:
                        n, k = n + args.writers, 1

            threads = [threading.Thread(target=revoke, args=(n,), daemon=True) for n in range(args.writers)]
            for thread in threads:
                thread.start()
            time.sleep(5)
            phase[0] = "during"
            started = time.perf_counter()
            output = subprocess.run([*flask, "backup", str(work / "copy.db")], cwd=ROOT, env=env, check=True,
                                    capture_output=True, text=True).stdout.strip()
            took = time.perf_counter() - started
            stop.set()
            for thread in threads:
                thread.join()
        finally:
            server.terminate()
            server.wait()
        print(f"{args.users} users x {args.sessions} sessions, {args.writers} revoking clients, 2 workers")
        print(f"backup: {took:.2f} s (the flask command, app start included): {output}")
        for name, values in latencies.items():
            values.sort()
            print(f"revocations {name:6}: {len(values):4} answered, p50 {statistics.median(values) * 1000:.1f} ms, "
                  f"p99 {values[int(len(values) * 0.99) - 1] * 1000:.1f} ms, worst {values[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
