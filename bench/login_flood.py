"""Logins never starve the other routes: GET and verify latency with and without a login flood.

python bench/login_flood.py [--seconds 15] [--rates 10 0]

Starts the service (serve.py: Granian, the default workers and threads, SQLite, login limits at
their defaults, SESSIONS_TRUSTED_PROXIES=1 so that each flooding client is its own address),
then in each phase samples GET /api/user/sessions and GET /api/auth/verify from 4 clients at a
steady pace (each request every 20 ms, keep-alive) while 40 addresses (X-Forwarded-For
10.0.0.1-40) send logins for unknown users: none in the baseline; then at each --rates total
logins per second (0: as fast as answers come back, each client sending its next login as soon
as the last is answered). Prints p50/p99 of GET and verify per phase, and what the logins got
(401: hashed and refused; 503: refused at once, the hashing queue full; 429: the login limit).
"""

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import free_port

FLOODERS = 40
SAMPLERS = 4
PACE = 0.02


def percentile(values: list, fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000 if ordered else float("nan")


def start_service(folder: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    seed = os.path.join(folder, "seed.json")
    with open(seed, "w") as handle:
        json.dump({"users": [{"username": "bench", "password": "bench-password", "token": "tok-bench",
                              "sessions": [{"id": "sess_bench", "token": "cookie-bench"}]}]}, handle)
    env = {**os.environ, "SESSIONS_DATABASE_URL": f"sqlite:///{folder}/sessions.db", "SESSIONS_BIND": f"127.0.0.1:{port}",
           "SESSIONS_TRUSTED_PROXIES": "1", "SESSIONS_ACCESS_LOG": "off", "SESSIONS_SEED_FILE": seed}
    process = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return process, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the service did not start")
        time.sleep(0.1)


def sampler(port: int, path: str, headers: dict, stop: threading.Event, into: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while not stop.is_set():
        started = time.perf_counter()
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        took = time.perf_counter() - started
        into.append(took)
        time.sleep(max(0.0, PACE - took))


def flooder(port: int, n: int, interval: float, stop: threading.Event, into: list) -> None:
    body = json.dumps({"username": f"nobody-{n}", "password": "not a password"})
    headers = {"Content-Type": "application/json", "X-Forwarded-For": f"10.0.0.{n + 1}"}
    while not stop.is_set():
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            connection.request("POST", "/api/auth/login", body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            into.append((response.status, time.perf_counter() - started))
        except OSError:
            into.append((None, time.perf_counter() - started))
        finally:
            connection.close()
        time.sleep(max(0.0, interval - (time.perf_counter() - started)))


def flood(port: int, rate: float, seconds: float, results) -> None:
    """The 40 flooding addresses, in a process of their own: their threads never hold the GIL
    the samplers need, so the samplers measure the service, not this client."""
    stop, logins = threading.Event(), []
    interval = FLOODERS / rate if rate else 0.0
    threads = [threading.Thread(target=flooder, args=(port, n, interval, stop, logins)) for n in range(FLOODERS)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    results.put(logins)


def phase(port: int, seconds: float, rate: float | None) -> dict:
    stop = threading.Event()
    gets, verifies, logins = [], [], []
    auth = {"Authorization": "tok-bench", "Cookie": "zipline_token=cookie-bench"}
    threads = [threading.Thread(target=sampler, args=(port, "/api/user/sessions", auth, stop, gets))
               for _ in range(SAMPLERS // 2)]
    threads += [threading.Thread(target=sampler, args=(port, "/api/auth/verify", auth, stop, verifies))
                for _ in range(SAMPLERS // 2)]
    flooding = None
    if rate is not None:
        results = multiprocessing.Queue()
        flooding = multiprocessing.Process(target=flood, args=(port, rate, seconds, results))
        flooding.start()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    if flooding is not None:
        logins = results.get()
        flooding.join()
    return {"gets": gets, "verifies": verifies, "logins": logins}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rates", type=float, nargs="+", default=[10, 0],
                        help="total logins per second of the flood phases (0: as fast as answered)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_service(folder)
        try:
            phase(port, 2, None)  # warm up
            results = [("no flood", phase(port, args.seconds, None))]
            for rate in args.rates:
                label = f"40 addresses, {rate:g} logins/s" if rate else "40 addresses, as fast as answered"
                results.append((label, phase(port, args.seconds, rate)))
        finally:
            process.terminate()
            process.wait(30)
    print(f"{'phase':38} {'GET p50/p99 ms':>18} {'verify p50/p99 ms':>18}  logins")
    for label, result in results:
        get = f"{percentile(result['gets'], 0.5):.1f}/{percentile(result['gets'], 0.99):.1f}"
        verify = f"{percentile(result['verifies'], 0.5):.1f}/{percentile(result['verifies'], 0.99):.1f}"
        statuses = {}
        for status, took in result["logins"]:
            statuses.setdefault(status, []).append(took)
        logins = ", ".join(f"{len(times)}x {status} (p50 {percentile(times, 0.5):.0f} ms, p99 "
                           f"{percentile(times, 0.99):.0f} ms)" for status, times in sorted(statuses.items(),
                                                                                           key=lambda i: str(i[0])))
        print(f"{label:38} {get:>18} {verify:>18}  {logins or '-'}")
    base = results[0][1]
    for label, result in results[1:]:
        print(f"{label}: GET p99 {percentile(result['gets'], 0.99) / percentile(base['gets'], 0.99):.2f}x, "
              f"verify p99 {percentile(result['verifies'], 0.99) / percentile(base['verifies'], 0.99):.2f}x "
              "of no flood")


if __name__ == "__main__":
    main()
