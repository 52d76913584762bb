"""GET throughput of 3 instances against 1, on one PostgreSQL, behind nginx's round robin.

python bench/instances.py [--seconds 10] [--postgres URL]

Seeds a throwaway PostgreSQL database (100 users x 10 sessions), then for 1 and 3 instances
(serve.py, one worker each, its own port) behind examples/nginx-upstream.conf runs wrk (16
connections, 2 threads) on GET /api/user/sessions through nginx. Prints req/s, p50 and p99.
On one machine every instance, nginx, PostgreSQL and wrk share the same cores: the figure says
what several instances cost, not what several machines would give.
"""

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from run import free_port

DEFAULT_POSTGRES = "postgresql+psycopg://root@127.0.0.1:5432/postgres"
PLACEHOLDERS = ("127.0.0.1:8001", "127.0.0.1:8002", "127.0.0.1:8003")


def wait_for(url: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer") from None
            time.sleep(0.1)


def nginx(folder: Path, listen: int, ports: list[int]) -> subprocess.Popen:
    text = (ROOT / "examples" / "nginx-upstream.conf").read_text().replace("127.0.0.1:8080", f"127.0.0.1:{listen}")
    lines = text.splitlines(keepends=True)
    upstream = [line for line in lines if line.strip().startswith("server 127.0.0.1:800")]
    servers = "".join(f"    server 127.0.0.1:{port};\n" for port in ports)
    text = text.replace("".join(upstream), servers)
    folder.mkdir()
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))
    config = folder / "nginx.conf"
    config.write_text(("user root;\n" if os.geteuid() == 0 else "") + "daemon off;\nworker_processes 1;\n"
                      + f"pid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n"
                      + f"events {{ worker_connections 512; }}\nhttp {{\n    access_log off;\n{temp}\n{text}}}\n")
    return subprocess.Popen(["/usr/sbin/nginx", "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")],
                            start_new_session=True)


def measure(folder: Path, url: str, count: int, seconds: float) -> tuple[float, float, float]:
    """One round: `count` instances behind nginx, wrk through it; req/s, p50 and p99 (ms)."""
    processes, ports = [], []
    env = {**os.environ, "SESSIONS_DATABASE_URL": url, "SESSIONS_WORKERS": "1", "SESSIONS_ACCESS_LOG": "off",
           "SESSIONS_TOUCH_SECONDS": "0"}
    try:
        for _ in range(count):
            port = free_port()
            processes.append(subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT,
                                              env={**env, "SESSIONS_BIND": f"127.0.0.1:{port}"},
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ports.append(port)
        for port in ports:
            wait_for(f"http://127.0.0.1:{port}/api/health")
        listen = free_port()
        proxy = nginx(Path(tempfile.mkdtemp(dir=folder)) / "nginx", listen, ports)
        processes.append(proxy)
        wait_for(f"http://127.0.0.1:{listen}/api/health")
        target = f"http://127.0.0.1:{listen}/api/user/sessions"
        check = urllib.request.Request(target, headers={"Authorization": "tok-u0"})
        try:
            urllib.request.urlopen(check, timeout=10).read()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"GET through nginx: {error.code} {error.read()!r}") from None
        subprocess.run(["wrk", "-t2", "-c16", "-d2s", "-H", "Authorization: tok-u0", target], capture_output=True,
                       check=True)  # warm up
        out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds:g}s", "--latency", "-H", "Authorization: tok-u0",
                              target], capture_output=True, text=True, check=True).stdout
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
    if "Non-2xx" in out:
        raise SystemExit("wrk got answers other than 200:\n" + out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def latency(label: str) -> float:
        value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)\b", out).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    return rate, latency("50%"), latency("99%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    name = f"zipline_sessions_bench_{secrets.token_hex(4)}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    try:
        with tempfile.TemporaryDirectory() as folder:
            seed = Path(folder) / "seed.json"
            seed.write_text(json.dumps({"users": [
                {"username": f"u{n}", "token": f"tok-u{n}",
                 "sessions": [{"id": f"sess_u{n}_{k}", "token": f"c-{n}-{k}"} for k in range(10)]}
                for n in range(100)]}))
            env = {**os.environ, "SESSIONS_DATABASE_URL": url}
            subprocess.run([sys.executable, "-m", "flask", "--app", "app", "seed", str(seed)], cwd=ROOT, env=env,
                           check=True, capture_output=True)
            rounds = [(count, measure(Path(folder), url, count, args.seconds)) for count in (1, 3, 1, 3)]
            print(f"{'instances':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}   (rounds interleaved)")
            for count, (rate, p50, p99) in rounds:
                print(f"{count:>9} {rate:>8.0f} {p50:>7.2f} {p99:>7.2f}")
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()


if __name__ == "__main__":
    main()
