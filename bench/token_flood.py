"""A token-reset flood against a real server, and what it does to another user's writes.

python bench/token_flood.py [--seconds 20] [--flooders 8] [--workers 2] [--limit "10 per hour"]

One user's API token floods PATCH /api/user/token from `--flooders` threads for `--seconds`
(each thread uses the newest token it has seen, so successes keep the flood going); meanwhile
another user sends writes one after another (DELETE /api/user/sessions naming a session they do
not have: a write transaction under their lock, answered 400). Prints the flood's answers by
status and the other user's write latencies (median, p99), first without a flood, then with it.
SESSIONS_TOKEN_RESET_RATE_LIMIT is `--limit` (`off` shows the one-second spacing alone).
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from live_server import LiveServer

SEED = {"users": [{"username": "flood", "token": "tok-flood"},
                  {"username": "other", "token": "tok-other"}]}


def writes(server: LiveServer, stop: threading.Event) -> list[float]:
    times = []
    while not stop.is_set():
        started = time.perf_counter()
        status = server.request("DELETE", "/api/user/sessions", {"Authorization": "tok-other"},
                                {"sessionId": "sess_nope"})[0]
        times.append((time.perf_counter() - started) * 1000)
        assert status == 400, status
    return times


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--flooders", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", default="10 per hour")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        server = LiveServer(Path(work), f"sqlite:///{work}/sessions.db", SEED, workers=args.workers,
                            env={"SESSIONS_TOKEN_RESET_RATE_LIMIT": args.limit, "SESSIONS_ACCESS_LOG": "off"}).start()
        try:
            stop = threading.Event()
            timer = threading.Timer(args.seconds / 2, stop.set)
            timer.start()
            quiet = writes(server, stop)
            answers, token, lock = Counter(), ["tok-flood"], threading.Lock()
            stop = threading.Event()

            def flood():
                while not stop.is_set():
                    status, _, body = server.request("PATCH", "/api/user/token", {"Authorization": token[0]})
                    with lock:
                        answers[status] += 1
                        if status == 200:
                            token[0] = body["token"]

            threads = [threading.Thread(target=flood) for _ in range(args.flooders)]
            for thread in threads:
                thread.start()
            threading.Timer(args.seconds, stop.set).start()
            loud = writes(server, stop)
            for thread in threads:
                thread.join()
        finally:
            server.stop()
    print(f"flood: {sum(answers.values())} resets in {args.seconds:g} s from {args.flooders} threads, "
          f"{args.workers} workers, limit {args.limit!r}: " + ", ".join(f"{n} x {s}" for s, n in sorted(answers.items())))
    for name, values in (("without flood", quiet), ("during flood", loud)):
        print(f"other user's writes {name}: n={len(values)} median {statistics.median(values):.1f} ms, "
              f"p99 {p99(values):.1f} ms")


if __name__ == "__main__":
    main()
