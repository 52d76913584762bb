"""Instructions per GET, counted by valgrind's callgrind: a measure this noisy VM cannot move.

python bench/instructions.py [--users 10000 100000] [--requests 100 600] [--touch-seconds N] [--hot N]

For each size: seeds N users x 10 sessions through `flask seed`, then runs GET token+cookie
in-process (the Flask app's WSGI callable, random users) R1 and R2 times under callgrind; the
difference over R2 - R1 is the instructions one request costs, start-up removed. Each response
is closed as a server closes it, so a last-activity write (after the response) is counted too;
--touch-seconds 0 turns activity off, --hot N sends every GET to one of the first N sessions. Wall-clock
numbers on a shared machine swing by tens of percent; this one repeats to the instruction.
"""

import argparse
import io
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def drive(database: str, users: int, requests: int, touch_seconds: int | None, hot: int | None) -> None:
    """The measured body: `requests` GETs through the app, as a WSGI server would call it."""
    sys.path.insert(0, str(ROOT))
    from app import create_app

    config = {"DATABASE_URL": database, "LOGIN_RATE_LIMIT": "off"}
    if touch_seconds is not None:
        config["TOUCH_SECONDS"] = touch_seconds
    app = create_app(config)
    rng = random.Random(7)
    for _ in range(requests):
        if hot:
            session = rng.randrange(hot)
            user, k = divmod(session, 10)
        else:
            user, k = rng.randrange(users), rng.randrange(10)
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/api/user/sessions", "SERVER_NAME": "bench",
                   "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
                   "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "REMOTE_ADDR": "127.0.0.1",
                   "HTTP_AUTHORIZATION": f"tok-{user}", "HTTP_COOKIE": f"zipline_token=cookie-{user}-{k}"}
        status = []
        body = app.wsgi_app(environ, lambda line, headers, status=status: status.append(line))
        b"".join(body)
        if hasattr(body, "close"):  # a one-piece body is a plain list (framework.WholeBodyResponse)
            body.close()
        assert status[0].startswith("200"), status


def count(database: str, users: int, requests: int, touch_seconds: int | None, hot: int | None) -> int:
    output = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--drive", database, str(users), str(requests), str(touch_seconds), str(hot)],
        capture_output=True, text=True, check=True, env={**os.environ, "SESSIONS_ACCESS_LOG": "off"},
    ).stderr
    return int(re.search(r"Collected : (\d+)", output).group(1))


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--drive":
        touch_seconds, hot = (None if value == "None" else int(value) for value in sys.argv[5:7])
        drive(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), touch_seconds, hot)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--requests", type=int, nargs=2, default=[100, 600])
    parser.add_argument("--touch-seconds", type=int, help="SESSIONS_TOUCH_SECONDS (0: activity off)")
    parser.add_argument("--hot", type=int, help="send every GET to one of the first N sessions")
    args = parser.parse_args()
    low, high = args.requests
    per_request = {}
    for users in args.users:
        work = Path(tempfile.mkdtemp(prefix=f"zipline-instructions-{users}-"))
        database = f"sqlite:///{work / 'sessions.db'}"
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_seed.py"), str(users), "10",
                        str(work / "seed.json")], check=True)
        subprocess.run([str(BIN / "flask"), "--app", "app", "seed", str(work / "seed.json")], cwd=ROOT,
                       check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "SESSIONS_DATABASE_URL": database,
                            "SESSIONS_TTL_SECONDS": str(10 * 365 * 86400)})
        measured = []
        for n in (high, low):
            # Each run on a fresh copy of the seeded file: activity written by one run would
            # otherwise spare the next its writes.
            copy = work / f"run-{n}.db"
            shutil.copyfile(work / "sessions.db", copy)
            measured.append(count(f"sqlite:///{copy}", users, n, args.touch_seconds, args.hot))
        per_request[users] = (measured[0] - measured[1]) / (high - low)
        print(f"{users} users x 10 sessions: {per_request[users]:,.0f} instructions per GET token+cookie")
    if len(per_request) > 1:
        first, last = per_request[args.users[0]], per_request[args.users[-1]]
        print(f"from {args.users[0]} to {args.users[-1]} users: {last / first - 1:+.1%}")


if __name__ == "__main__":
    main()
