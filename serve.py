"""Serve zipline-sessions with Granian: `python serve.py`, configured by SESSIONS_* variables.

Granian reads GRANIAN_* variables and flags; this launcher keeps the service's one interface.
It builds the app once, before any worker exists, so a wrong setting stops the start with one
line, migrations run once, and ua-parser's matchers are built once; the workers are forked
from it and share that memory.

The cyclic garbage collector is off while main() imports and builds the app (its passes over a
start's young objects cost about a sixth of it: 70-80 ms of 470 on the 2-core machine of
bench/fixture.py), so this module imports only the standard library at its top. What was built
is then frozen (gc.freeze) before the workers are forked, as Python's documentation advises:
their collections never walk it, and so never write to the pages they share with the master.
"""

import encodings.idna  # noqa: F401  (see announce_when_ready)
import gc
import multiprocessing
import os
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# Address, time, method, path (Granian's path never holds the query string), protocol, status,
# milliseconds, User-Agent: no cookie, no Authorization header. Granian has no size atom.
ACCESS_LOG_FORMAT = '%(addr)s [%(time)s] "%(method)s %(path)s %(protocol)s" %(status)d %(dt_ms).1fms ' \
                    '"%(header{user-agent})s"'
# A client gets this long to send its request headers (Granian reads them outside Python).
HEADER_READ_TIMEOUT_MS = 10_000
# On SIGTERM, workers finish the requests they hold within this long, then are killed.
GRACEFUL_SECONDS = 20
# Connections each worker takes on at once; slow clients wait in Granian, not in Python threads.
BACKPRESSURE = 2048


def build_server(app, host: str, port: int):
    """A Granian server for `app` (already built) as its configuration says."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    config = app.config
    access_log = config["ACCESS_LOG"]
    return Granian(
        "app:create_app",  # for Granian's process titles; the workers run the app built here
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        workers=config["WORKERS"],
        blocking_threads=config["THREADS"],
        backlog=BACKPRESSURE,
        backpressure=BACKPRESSURE,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS),
        log_level=LogLevels(config["LOG_LEVEL"]),
        log_access=access_log != "off",
        log_access_format=ACCESS_LOG_FORMAT,
        log_dictconfig=_logging_config(access_log),
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_SECONDS,
        working_dir=ROOT,
    )


def _logging_config(access_log: str) -> dict:
    """Granian's logging configuration, its access lines escaped (web/logs.py) and sent to
    stdout or to the file `access_log`."""
    from granian.log import LOGGING_CONFIG

    from zipline_sessions.web.logs import AccessLineFormatter

    formatters = dict(LOGGING_CONFIG["formatters"])
    formatters["access"] = {**formatters["access"], "()": AccessLineFormatter}
    handlers = dict(LOGGING_CONFIG["handlers"])
    if access_log not in ("-", "off"):
        handlers["access"] = {"formatter": "access", "class": "logging.FileHandler", "filename": access_log}
    return {"formatters": formatters, "handlers": handlers}


def reserve_port(host: str, port: int) -> tuple[int, socket.socket | None]:
    """Port 0: a free port, held by a bound socket for as long as the server runs.

    Granian's workers each bind the address with SO_REUSEPORT; this socket does too but never
    listens, so it takes no connections and keeps the port from anyone else meanwhile.
    """
    if port != 0:
        return port, None
    holder = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, 0))
    return holder.getsockname()[1], holder


def announce_when_ready(base_url: str, host: str, port: int, ready_file: str | None, probe: str) -> None:
    """Once the service answers, say where (stderr, and `ready_file` when set), once.

    A daemon thread of the master: it only connects and reads, then writes the file atomically.
    Workers are forked while it runs, so it must import nothing: a module half-imported by this
    thread at a fork is never importable in that worker. Connecting encodes the host with the
    `idna` codec, which Python imports on first use: serve.py imports it first (a worker forked
    mid-import answered every request 500 with "unknown encoding: idna").

    Each probe is sent once per connection and waits for its answer however long a worker takes
    to start: a probe given up on would still be served later, in the middle of the first test.
    It carries `probe` (fixture/ready_probe.py), so test control neither journals it nor applies
    a fault to it.
    """
    from zipline_sessions.fixture.ready_probe import HEADER
    from zipline_sessions.fixture.serve_each import write_atomically

    def wait_then_announce():
        request = (f"GET /api/health HTTP/1.1\r\nHost: {host}\r\n{HEADER}: {probe}\r\n"
                   "Connection: close\r\n\r\n").encode()
        while True:
            try:
                with socket.create_connection((host, port), timeout=2) as connection:
                    connection.settimeout(None)
                    connection.sendall(request)
                    if connection.recv(12).startswith(b"HTTP/1.1"):
                        break
            except OSError:
                pass
            time.sleep(0.005)
        if ready_file:
            write_atomically(ready_file, base_url + "\n")
        print(f"zipline-sessions: ready at {base_url}", file=sys.stderr, flush=True)

    threading.Thread(target=wait_then_announce, name="announce-ready", daemon=True).start()


def main() -> int:
    gc.disable()  # until the app is built (see above)
    try:
        app = _built_app()
    finally:
        gc.freeze()  # everything built: shared with the workers, never walked by a collection
        gc.enable()
    if app is None:
        return 2
    from zipline_sessions.activity import last_seen, webhooks
    from zipline_sessions.fixture import ready_probe
    from zipline_sessions.storage.database import db

    with app.app_context():
        db.engine.dispose()  # no connection crosses the fork: each worker opens its own
    # Workers are forked from this process (so they share the built app); Python 3.14 would
    # otherwise pick forkserver, and Granian then spawn, which rebuilds everything per worker.
    multiprocessing.set_start_method("fork", force=True)
    webhooks.start_in_workers(app)  # each worker delivers session events (SESSIONS_WEBHOOK_URL)
    host, _, port = app.config["BIND"].rpartition(":")
    host = host.strip("[]")
    port, holder = reserve_port(host, int(port))
    base_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    announce_when_ready(base_url, host, port, app.config["READY_FILE"], ready_probe.new_probe(app))
    if app.config["PARENT_PID"] is not None:
        from zipline_sessions.fixture.parent_watch import watch_parent

        watch_parent(app.config["PARENT_PID"])
    try:
        # Granian calls the loader in each worker, after the fork: the worker's activity batches
        # start there, and are flushed when the worker stops.
        server = build_server(app, host, port)
        relay_signals_through_a_thread(server)
        server.serve(target_loader=lambda _target: last_seen.start_in_worker(app))
    finally:
        if holder is not None:
            holder.close()
    return 0


def relay_signals_through_a_thread(server) -> None:
    """Granian's master (2.8.7) takes SIGTERM, SIGINT and SIGHUP with a handler that sets a
    threading.Event, and Python runs that handler on the main thread, which waits on that very
    Event. If the main thread holds the Event's lock at that moment (a second signal landing
    inside the first one's handler: Ctrl-C twice, a stop sent twice), the handler waits for itself
    forever and the service never stops: 4 of 20 starts hung after two SIGTERMs sent to the master
    at once. Here the master's handlers only write a byte to a pipe; a thread reads it and calls
    Granian's own handler, so the Event is set off the main thread, one signal at a time. (A worker
    signalled twice at once can hang the same way inside Granian; the master kills it after
    GRACEFUL_SECONDS, so a stop then takes that long.)

    The thread runs while workers are forked from this process, so it imports nothing.
    """
    read_end, write_end = os.pipe()
    handlers = {b"i": server.signal_handler_interrupt, b"r": server.signal_handler_reload}

    def relay():
        while which := os.read(read_end, 1):
            handlers[which]()

    threading.Thread(target=relay, name="signal-relay", daemon=True).start()
    # Granian installs these as it starts, for SIGTERM and SIGINT, and SIGHUP.
    server.signal_handler_interrupt = lambda *_args: os.write(write_end, b"i")
    server.signal_handler_reload = lambda *_args: os.write(write_end, b"r")


def serve_each(arguments: list[str]) -> int:
    """`zipline-sessions serve-each SPEC`: several services from one start (the pytest plugin's,
    one per xdist worker), each as `zipline-sessions serve` runs with its own settings.

    This process imports the app and builds ua-parser's matchers once, then forks a service per
    entry of SPEC, which runs main() (zipline_sessions/fixture/serve_each.py: the SPEC, the forks,
    the stop). On a machine with few cores the imports are most of a start (about 0.4 s of CPU of
    0.55), and N services started apart pay them N times while the pytest workers boot beside them.
    """
    from zipline_sessions.fixture import serve_each as each

    specs = each.read_spec(arguments)
    if isinstance(specs, str):
        print(f"zipline-sessions: serve-each: {specs}", file=sys.stderr)
        return 2
    gc.disable()
    import granian.server.mp  # noqa: F401

    # What main() imports, once for all.
    import app  # noqa: F401
    from zipline_sessions.activity import last_seen, webhooks  # noqa: F401
    from zipline_sessions.devices.useragent import warm_up
    from zipline_sessions.fixture import parent_watch, ready_probe  # noqa: F401

    warm_up()  # once for all: a service's first login or reset to a seed parses User-Agents
    if threading.active_count() != 1:  # a thread would not survive the fork
        print("zipline-sessions: serve-each: a thread runs before the fork", file=sys.stderr)
        return 1
    gc.freeze()  # shared with the services, never walked by their collections
    gc.enable()
    return each.fork_each(specs, main)


def _built_app():
    """The app, or None once a wrong setting has been said in one line."""
    import granian  # noqa: F401  (imported here with the collector off: build_server needs it)

    from app import create_app
    from zipline_sessions.config.checks import ConfigError

    try:
        return create_app()
    except ConfigError as error:
        print(f"zipline-sessions: {error}", file=sys.stderr)
        return None


if __name__ == "__main__":
    sys.exit(main())
