"""The benchmark: seed, serve with the production server (Granian), load it with wrk, print tables.

python bench/run.py [--users 10000 100000] [--sessions 10] [--seconds 10] [--connections 16]
                    [--rounds 3] [--threads 1] [--postgres URL | --no-postgres]

For each database size: seeds N users x K sessions through `flask seed` (timed), starts the
service (serve.py: Granian, one worker) pinned to core 0 and drives it with wrk pinned to core 1.
Beside it, on the same file and the same Granian settings: the raw-WSGI floor
(bench/floor_app.py), and two constant apps (bench/constant_apps.py) that show what a request
costs before any work. Reads are measured round by round (service, floor, ...) and each row
keeps its median round, since a shared machine is noisy. The service records last activity (the
default); a second one with SESSIONS_TOUCH_SECONDS=0 gives the same GETs with activity off, both
random over all sessions (most GETs are then a session's first in its minute: one write each)
and over --hot sessions only (each used about every second: one write a minute each). Then: DELETE, logins, GET p99 while
logins run (the service's production thread count), and the same data on PostgreSQL.
Access logs are off for every server, so all do the same work.
"""

import argparse
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD_USERS = 16
TICKS = os.sysconf("SC_CLK_TCK")
DEFAULT_POSTGRES = "postgresql+psycopg://root@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pinned(core: int, command: list) -> list:
    return (["taskset", "-c", str(core)] if shutil.which("taskset") and os.cpu_count() > 1 else []) + command


class Server:
    """A server process pinned to core 0, up when it answers."""

    def __init__(self, command: list, env: dict, port: int):
        self.port = port
        self.process = subprocess.Popen(pinned(0, command), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/user/sessions", timeout=1)
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"{command} did not start")

    def worker_pid(self) -> int:
        tasks = Path(f"/proc/{self.process.pid}/task").glob("*/children")
        return max(int(pid) for task in tasks for pid in task.read_text().split())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def service(env: dict, threads: int) -> Server:
    port = free_port()
    return Server([sys.executable, "serve.py"], {**env, "SESSIONS_BIND": f"127.0.0.1:{port}",
                                                  "SESSIONS_WORKERS": "1", "SESSIONS_THREADS": str(threads)}, port)


def granian(target: str, env: dict, threads: int) -> Server:
    """A plain WSGI app under Granian with the service's settings (one worker, HTTP/1)."""
    port = free_port()
    command = [str(BIN / "granian"), "--interface", "wsgi", "--http", "1", "--no-ws", "--workers", "1",
               "--blocking-threads", str(threads), "--backpressure", "2048", "--host", "127.0.0.1",
               "--port", str(port), target]
    return Server(command, env, port)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return total / TICKS


def postgres_pids() -> list[int]:
    out = subprocess.run(["pgrep", "-x", "postgres"], capture_output=True, text=True, check=False).stdout
    return [int(pid) for pid in out.split()]


def wrk(server: Server, mode: str, env: dict, seconds: int, connections: int, start: int = 0,
        postgres: bool = False) -> dict:
    """One wrk run; `start` moves the DELETE walk past sessions an earlier run revoked."""
    command = pinned(1, ["wrk", "-t2" if connections > 1 else "-t1", f"-c{connections}", f"-d{seconds}s",
                         "--timeout", "10s", "--latency", "-s", str(ROOT / "bench" / "load.lua"),
                         f"http://127.0.0.1:{server.port}"])
    watched = [server.worker_pid()] + (postgres_pids() if postgres else [])
    before, started = cpu_seconds(watched[:1]), time.monotonic()
    database_before = cpu_seconds(watched[1:])
    output = subprocess.run(command, env={**env, "BENCH_MODE": mode, "BENCH_START": str(start)},
                            capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - started
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.MULTILINE))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50": milliseconds(latency["50"]), "p99": milliseconds(latency["99"]),
            "errors": int(errors.group(1)) if errors else 0,
            "cpu": (cpu_seconds(watched[:1]) - before) / elapsed,
            "db_cpu": (cpu_seconds(watched[1:]) - database_before) / elapsed if postgres else None}


def milliseconds(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def rss_mb(server: Server) -> float:
    status = Path(f"/proc/{server.worker_pid()}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def seed(env: dict, seed_file: Path) -> float:
    started = time.monotonic()
    subprocess.run([str(BIN / "flask"), "--app", "app", "seed", str(seed_file)], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def median_rounds(reads: list, env: dict, args) -> tuple[dict, dict]:
    """Each read measured `args.rounds` times, interleaved; the median round of each."""
    for _, mode, server in reads:
        wrk(server, mode, env, 2, args.connections)  # warm up
    rounds = {name: [] for name, _, _ in reads}
    for _ in range(args.rounds):
        for name, mode, server in reads:
            rounds[name].append(wrk(server, mode, env, args.seconds, args.connections))
    medians = {name: sorted(measured, key=lambda row: row["rps"])[len(measured) // 2]
               for name, measured in rounds.items()}
    return medians, rounds


def gets_while_logging_in(env: dict, args) -> dict:
    """GET p99 on one worker with the production thread count, alone and while 2 connections log in."""
    server = service({k: v for k, v in env.items() if k != "SESSIONS_THREADS"}, threads=production_threads())
    try:
        wrk(server, "get", env, 2, args.connections)
        alone = wrk(server, "get", env, args.seconds, args.connections)
        logins = {}

        def log_in():
            logins.update(wrk(server, "login", env, args.seconds + 2, 2))

        thread = threading.Thread(target=log_in)
        thread.start()
        time.sleep(1)
        during = wrk(server, "get", env, args.seconds, args.connections)
        thread.join()
        return {"alone": alone, "during": during, "logins": logins, "threads": production_threads()}
    finally:
        server.stop()


def production_threads() -> int:
    sys.path.insert(0, str(ROOT))
    from zipline_sessions.config.settings import DEFAULTS

    return int(os.environ.get("SESSIONS_THREADS", DEFAULTS["THREADS"]))


def run_size(users: int, args, constants: dict) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"zipline-bench-{users}-"))
    seed_file, database = work / "seed.json", work / "sessions.db"
    subprocess.run([sys.executable, str(ROOT / "bench" / "make_seed.py"), str(users), str(args.sessions),
                    str(seed_file), str(PASSWORD_USERS)], check=True)
    env = {**os.environ, "SESSIONS_DATABASE_URL": f"sqlite:///{database}",
           "SESSIONS_LOGIN_RATE_LIMIT": "1000000 per minute", "SESSIONS_LOGIN_ADDRESS_RATE_LIMIT": "1000000 per minute",
           "SESSIONS_LOGIN_USERNAME_RATE_LIMIT": "1000000 per minute", "SESSIONS_ACCESS_LOG": "off",
           "SESSIONS_TTL_SECONDS": str(10 * 365 * 86400), "SESSIONS_LOG_LEVEL": "warning",
           "BENCH_USERS": str(users), "BENCH_SESSIONS": str(args.sessions),
           "BENCH_PASSWORD_USERS": str(PASSWORD_USERS), "BENCH_DATABASE": str(database),
           "BENCH_HOT": str(args.hot)}
    results = {"seed_seconds": seed(env, seed_file)}
    # "service" records last activity (the default); "service-off" is the same with SESSIONS_TOUCH_SECONDS=0.
    servers = {"service": service(env, args.threads), "floor": granian("bench.floor_app:app", env, args.threads),
               "service-off": service({**env, "SESSIONS_TOUCH_SECONDS": "0"}, args.threads)}
    if not constants:
        servers["flask"] = granian("bench.constant_apps:flask_app", env, args.threads)
        servers["raw"] = granian("bench.constant_apps:raw", env, args.threads)
    try:
        reads = [("get", "get", servers["service"]), ("floor", "get", servers["floor"]),
                 ("get-off", "get", servers["service-off"]), ("hot", "get-hot", servers["service"]),
                 ("hot-off", "get-hot", servers["service-off"]),
                 ("get-token", "get-token", servers["service"]), ("verify", "verify", servers["service"])]
        reads += [(name, "get", servers[name]) for name in ("flask", "raw") if name in servers]
        medians, results["rounds"] = median_rounds(reads, env, args)
        results.update(medians)
        constants.update({name: medians[name] for name in ("flask", "raw") if name in medians})
        results["delete"] = wrk(servers["service"], "delete", env, args.seconds, args.connections, start=users)
        results["login"] = wrk(servers["service"], "login", env, args.seconds, 2)
        results["rss_mb"] = rss_mb(servers["service"])
    finally:
        for server in servers.values():
            server.stop()
    results.update(reads_off(env, args, keys=("get-off-threads",)))
    results["interference"] = gets_while_logging_in(env, args)
    if args.postgres:
        results["postgres"] = run_postgres(env, seed_file, users, args)
    shutil.rmtree(work, ignore_errors=True)
    return results


def reads_off(env: dict, args, keys=("get-off", "get-off-threads"), postgres: bool = False) -> dict:
    """GET with activity off on one worker, with the bench's thread count ("get-off") and with the
    production one ("get-off-threads"): with one thread a worker idles while PostgreSQL answers."""
    results = {}
    for key in keys:
        threads = args.threads if key == "get-off" else production_threads()
        server = service({**env, "SESSIONS_TOUCH_SECONDS": "0"}, threads)
        try:
            wrk(server, "get", env, 2, args.connections)
            results[key] = wrk(server, "get", env, args.seconds, args.connections, postgres=postgres)
        finally:
            server.stop()
    return results


def run_postgres(env: dict, seed_file: Path, users: int, args) -> dict:
    """The same seed in a fresh PostgreSQL database: seeding, GET and DELETE, with CPU use."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = f"zipline_bench_{secrets.token_hex(4)}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    env = {**env, "SESSIONS_DATABASE_URL": url}
    try:
        results = {"seed_seconds": seed(env, seed_file)}
        results.update(reads_off(env, args, postgres=True))
        server = service(env, args.threads)
        try:
            wrk(server, "get", env, 2, args.connections)
            results["get"] = wrk(server, "get", env, args.seconds, args.connections, postgres=True)
            results["delete"] = wrk(server, "delete", env, args.seconds, args.connections, start=users,
                                    postgres=True)
        finally:
            server.stop()
        return results
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


def print_size(users: int, results: dict, constants: dict, args) -> None:
    print(f"\n{users} users x {args.sessions} sessions on SQLite: seeded in {results['seed_seconds']:.1f} s; "
          f"worker RSS after the run {results['rss_mb']:.0f} MB")
    print(f"{'request':<34}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU':>7}{'non-2xx':>9}")
    rows = [("get", "GET token+cookie"), ("get-off", "GET, activity off"),
            ("hot", f"GET {args.hot} sessions, activity"), ("hot-off", f"GET {args.hot} sessions, off"),
            ("get-token", "GET token only"), ("verify", "GET /api/auth/verify"),
            ("delete", "DELETE one session"), ("login", "POST login (2 connections)"),
            ("floor", "floor: raw WSGI GET")]
    for key, label in rows:
        print_row(label, results[key])
    for key, label in (("flask", "constant Flask view"), ("raw", "constant raw WSGI app")):
        if key in constants:
            print_row(label, constants[key])
    if "postgres" in results:
        postgres = results["postgres"]
        print_row("PostgreSQL: GET token+cookie", postgres["get"])
        print_row("PostgreSQL: GET, activity off", postgres["get-off"])
        threads = production_threads()
        print_row(f"PostgreSQL: GET, off, {threads} threads", postgres["get-off-threads"])
        print_row(f"SQLite: GET, off, {threads} threads", results["get-off-threads"])
        print_row("PostgreSQL: DELETE one session", postgres["delete"])
        print(f"PostgreSQL: seeded in {postgres['seed_seconds']:.1f} s; GET x SQLite's: activity on "
              f"{postgres['get']['rps'] / results['get']['rps']:.2f}x, activity off "
              f"{postgres['get-off']['rps'] / results['get-off']['rps']:.2f}x, activity off with {threads} threads "
              f"{postgres['get-off-threads']['rps'] / results['get-off-threads']['rps']:.2f}x; "
              f"PostgreSQL's own CPU during GET {postgres['get']['db_cpu']:.0%} (activity off "
              f"{postgres['get-off']['db_cpu']:.0%}, {threads} threads {postgres['get-off-threads']['db_cpu']:.0%}), "
              f"during DELETE {postgres['delete']['db_cpu']:.0%}")
    get, floor, off = results["get"], results["floor"], results["get-off"]
    print(f"GET token+cookie, activity off (the floor's work) / floor: {off['rps'] / floor['rps']:.2f}x req/s, "
          f"p99 {off['p99'] / floor['p99']:.2f}x the floor's (medians of {args.rounds} rounds); round by round: "
          + ", ".join(f"{o['rps'] / f['rps']:.2f}x" for o, f in zip(results["rounds"]["get-off"],
                                                                    results["rounds"]["floor"])))
    print(f"GET token+cookie, activity on, random sessions (a write per GET) / floor: {get['rps'] / floor['rps']:.2f}x "
          "(round by round: " + ", ".join(f"{g['rps'] / f['rps']:.2f}x" for g, f in zip(results["rounds"]["get"],
                                                                                 results["rounds"]["floor"]))
          + f"); p99 {get['p99']:.1f} ms, {get['p99'] / off['p99']:.2f}x activity off's {off['p99']:.1f} ms; "
          f"verify / GET: {results['verify']['rps'] / get['rps']:.2f}x")
    print(f"last activity on / off (req/s, medians): random over all {users * args.sessions} sessions "
          f"{get['rps'] / results['get-off']['rps']:.2f}x; {args.hot} sessions, each used about every "
          f"{args.hot / results['hot']['rps']:.1f} s, {results['hot']['rps'] / results['hot-off']['rps']:.2f}x "
          "(round by round: " + ", ".join(f"{on['rps'] / off['rps']:.2f}x" for on, off in
                                          zip(results["rounds"]["hot"], results["rounds"]["hot-off"])) + ")")
    if {"flask", "raw"} <= constants.keys():
        ours = 1e6 / off["rps"] - 1e6 / constants["flask"]["rps"]
        floors = 1e6 / floor["rps"] - 1e6 / constants["raw"]["rps"]
        print(f"per request on one core: service (activity off) {1e6 / off['rps']:.0f} us = constant Flask view "
              f"{1e6 / constants['flask']['rps']:.0f} us + {ours:.0f} us; floor {1e6 / floor['rps']:.0f} us = "
              f"constant raw app {1e6 / constants['raw']['rps']:.0f} us + {floors:.0f} us")
    interference = results["interference"]
    alone, during = interference["alone"], interference["during"]
    print(f"GET p99 with {interference['threads']} threads: {alone['p99']:.2f} ms alone, {during['p99']:.2f} ms "
          f"while 2 connections log in ({during['p99'] / alone['p99']:.2f}x; {during['rps']:.0f} GET req/s, "
          f"{interference['logins']['rps']:.1f} logins/s, login p99 {interference['logins']['p99']:.0f} ms)")


def print_row(label: str, row: dict) -> None:
    print(f"{label:<34}{row['rps']:>9.0f}{row['p50']:>9.2f}{row['p99']:>9.2f}{row['cpu']:>7.0%}{row['errors']:>9}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the reads; the median is shown")
    parser.add_argument("--threads", type=int, default=1,
                        help="Granian blocking threads for the read comparisons (service and floor alike)")
    parser.add_argument("--postgres", default=os.environ.get("SESSIONS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
                        help="a PostgreSQL server URL; a throwaway database is made there")
    parser.add_argument("--no-postgres", dest="postgres", action="store_const", const=None)
    parser.add_argument("--hot", type=int, default=2000,
                        help="sessions the get-hot rows cycle through (each used about every second at "
                             "that many req/s)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    print(f"{os.cpu_count()} cores, {args.connections} connections, {args.seconds} s a run, "
          f"{args.threads} blocking thread(s); servers pinned to core 0, wrk to core 1")
    table, constants = [], {}
    for users in args.users:
        results = run_size(users, args, constants)
        table.append((users, results))
        print_size(users, results, constants, args)
    if len(table) > 1:
        (small, first), (large, last) = table[0], table[-1]
        growth = last["get"]["p50"] / first["get"]["p50"] - 1
        print(f"\nGET p50 from {small} to {large} users: {growth:+.0%}")


if __name__ == "__main__":
    main()
