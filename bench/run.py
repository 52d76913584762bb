"""The benchmark: seed, serve with the production server, load it with wrk, print a table.

python bench/run.py [--users 10000 100000] [--sessions 10] [--seconds 10] [--connections 16] [--rounds 3]

For each database size: seeds N users x K sessions through `flask seed` (timed), starts
gunicorn with one worker pinned to core 0 (taskset, where it exists), drives it with wrk
pinned to core 1, and measures the raw-WSGI floor (bench/floor_app.py) over the same file.
Access logs are off for both servers, so both do the same work. The GETs and the floor are
measured round by round and the median round shown, since a shared machine is noisy.
"""

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD_USERS = 16


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pinned(core: int, command: list) -> list:
    return (["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() > 1 else []) + command


def serve(app: str, env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    command = pinned(0, [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-w", "1", "-b", f"127.0.0.1:{port}", app])
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/user/sessions", timeout=1)
        except urllib.error.HTTPError:
            return process, port
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{app} did not start")


def wrk(port: int, mode: str, env: dict, seconds: int, connections: int, start: int = 0) -> dict:
    """One wrk run; `start` moves the DELETE walk past sessions an earlier run revoked."""
    command = pinned(1, ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
                         "-s", str(ROOT / "bench" / "load.lua"), f"http://127.0.0.1:{port}"])
    output = subprocess.run(command, env={**env, "BENCH_MODE": mode, "BENCH_START": str(start)},
                            capture_output=True, text=True, check=True).stdout
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50": milliseconds(latency["50"]), "p99": milliseconds(latency["99"]),
            "errors": int(errors.group(1)) if errors else 0}


def milliseconds(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def worker_rss_mb(master: subprocess.Popen) -> float:
    children = subprocess.run(["ps", "--ppid", str(master.pid), "-o", "rss="], capture_output=True,
                              text=True, check=False).stdout.split()
    if not children:  # taskset execs gunicorn, so the master is master.pid itself
        return 0.0
    return sum(int(kb) for kb in children) / 1024


def run_size(users: int, args) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"zipline-bench-{users}-"))
    seed_file, database = work / "seed.json", work / "sessions.db"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_seed.py"), str(users), str(args.sessions),
                    str(seed_file), str(PASSWORD_USERS)], check=True)
    env = {**os.environ, "SESSIONS_DATABASE_URL": f"sqlite:///{database}", "SESSIONS_LOGIN_RATE_LIMIT": "1000000 per minute",
           "SESSIONS_ACCESS_LOG": "off", "SESSIONS_TTL_SECONDS": str(10 * 365 * 86400),
           "BENCH_USERS": str(users), "BENCH_SESSIONS": str(args.sessions),
           "BENCH_PASSWORD_USERS": str(PASSWORD_USERS), "BENCH_DATABASE": str(database)}
    started = time.monotonic()
    subprocess.run([str(BIN / "flask"), "--app", "app", "seed", str(seed_file)], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    seeded = time.monotonic() - started
    service, port = serve("app:create_app()", env)
    floor, floor_port = serve("bench.floor_app:app", env)
    results = {"seed_seconds": seeded}
    try:
        # Login is bound by argon2id (0.1 s or more a try, by design): 2 connections, or wrk only sees queueing.
        # The reads go round by round (service, floor, service, ...) and each row keeps its
        # median round: a shared machine's noise then falls on both sides alike.
        reads = (("get", "get", port), ("floor", "get", floor_port), ("get-token", "get-token", port))
        for _, mode, port_ in reads:
            wrk(port_, mode, env, 2, args.connections)  # warm up
        rounds = {name: [] for name, _, _ in reads}
        for _ in range(args.rounds):
            for name, mode, port_ in reads:
                rounds[name].append(wrk(port_, mode, env, args.seconds, args.connections))
        for name, measured in rounds.items():
            results[name] = sorted(measured, key=lambda row: row["rps"])[len(measured) // 2]
        results["rounds"] = rounds
        results["delete"] = wrk(port, "delete", env, args.seconds, args.connections, start=users)
        results["login"] = wrk(port, "login", env, args.seconds, 2)
        results["rss_mb"] = worker_rss_mb(service)
    finally:
        for process in (service, floor):
            process.terminate()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the reads; the median is shown")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    print(f"{os.cpu_count()} cores, {args.connections} connections, {args.seconds} s a run; "
          "server pinned to core 0, wrk to core 1")
    table = []
    for users in args.users:
        results = run_size(users, args)
        table.append((users, results))
        print(f"\n{users} users x {args.sessions} sessions: seeded in {results['seed_seconds']:.1f} s; "
              f"worker RSS after the run {results['rss_mb']:.0f} MB")
        print(f"{'request':<24}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>8}")
        for mode, label in (("get", "GET token+cookie"), ("get-token", "GET token only"),
                            ("delete", "DELETE one session"), ("login", "POST login"),
                            ("floor", "floor: raw WSGI GET")):
            row = results[mode]
            print(f"{label:<24}{row['rps']:>10.0f}{row['p50']:>10.2f}{row['p99']:>10.2f}{row['errors']:>8}")
        get, floor = results["get"], results["floor"]
        print(f"GET token+cookie / floor: {get['rps'] / floor['rps']:.2f}x req/s, "
              f"p99 {get['p99'] / floor['p99']:.2f}x the floor's (medians of {args.rounds} rounds)")
        ratios = [g["rps"] / f["rps"] for g, f in zip(results["rounds"]["get"], results["rounds"]["floor"])]
        print("req/s ratio round by round: " + ", ".join(f"{ratio:.2f}x" for ratio in ratios))
    if len(table) > 1:
        (small, first), (large, last) = table[0], table[-1]
        growth = last["get"]["p50"] / first["get"]["p50"] - 1
        print(f"\nGET p50 from {small} to {large} users: {growth:+.0%}")


if __name__ == "__main__":
    main()
