"""The pytest plugin (entry point pytest11): options, the service's fixtures, its log on failures.

Fixtures:
  zipline_sessions         the service, reset as --zipline-sessions-scope says (default: before each test)
  zipline_sessions_server  the service as started, never reset (session scope)
  zipline_login            a factory: zipline_login(username, password) -> a logged-in requests.Session
Marker:
  @pytest.mark.zipline_sessions_seed(path_or_dict)  this test starts from that seed instead

Under pytest-xdist each worker has a service of its own, with one worker. The controller launches
them as the run begins (pytest_configure), so they start while the workers boot (about as long:
a fraction of a second each), and each worker finds its own ready; the controller stops them
when the run ends. A service that fails to start fails its worker's tests with one line; if the
controller cannot even launch one (no command), the worker tries itself and says why.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from pytest_zipline_sessions.service import StartError, ZiplineSessions, launch_together, stop_together

SCOPES = ("function", "module", "session")
PROFILES = ("contract", "zipline-v4")
# option name -> (help, ini default); each one is a command-line option, an ini option and,
# for the command, an environment variable.
OPTIONS = {
    "command": (("the zipline-sessions command (default: ZIPLINE_SESSIONS_COMMAND, then PATH, then beside "
                "this Python)"), ""),
    "port": ("the port the service listens on (0: any free one; under xdist, port + the worker's number)", "0"),
    "workers": ("the service's worker processes (always 1 under xdist)", "1"),
    "seed": ("a seed file loaded at start and at each reset", ""),
    "error_profile": (f"the service's error shape: {', '.join(PROFILES)}", ""),
    "scope": (f"how often the store is reset to the seed: {', '.join(SCOPES)}", "function"),
}
LOG_SECTION = "zipline-sessions log"
_service_key = pytest.StashKey[ZiplineSessions]()
_settings_key = pytest.StashKey[dict]()
_log_start_key = pytest.StashKey[int]()
_reset_state_key = pytest.StashKey[dict]()
_reset_in_setup_key = pytest.StashKey[bool]()
# The access line of a reset: the first request of a test whose setup resets the service.
RESET_LINE = '"POST /__test__/reset '


def pytest_addoption(parser):
    group = parser.getgroup("zipline-sessions")
    for name, (help_text, default) in OPTIONS.items():
        group.addoption(f"--zipline-sessions-{name.replace('_', '-')}", dest=f"zipline_sessions_{name}", help=help_text)
        parser.addini(f"zipline_sessions_{name}", help_text, default=default)


def pytest_configure(config):
    config.addinivalue_line("markers", "zipline_sessions_seed(seed): start this test from `seed` (a path or a "
                                       "dict) instead of the configured seed")
    config.stash[_settings_key] = _settings(config)
    local_workers = [spec for spec in (config.getoption("tx", None) or []) if spec == "popen"]
    is_controller = not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no"
    if is_controller and local_workers and config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(WorkersServices(config, len(local_workers)), "zipline-sessions-workers")


class WorkersServices:
    """In the xdist controller: a service for each worker, launched as the run begins (xdist names
    its local workers gw0, gw1, ...) from one `zipline-sessions serve-each`, which imports the app
    once and forks them; or, for a worker with another name, launched apart as it is set up."""

    WORKERINPUT_KEY = "zipline_sessions_folder"

    def __init__(self, config, count: int):
        self.settings = config.stash[_settings_key]
        self.services: dict[str, ZiplineSessions] = {}
        self.launcher = None  # the serve-each of gw0, gw1, ...
        try:
            find_command(self.settings["command"])  # before any folder is made
            together = {worker: _new_service(self.settings, _worker_folder(worker), worker)
                        for worker in (f"gw{index}" for index in range(count))}
        except StartError:
            return  # each worker starts its own and reports the problem to the tests that use it
        try:
            self.launcher = launch_together(list(together.values()))
        except StartError:
            for service in together.values():
                shutil.rmtree(service.work, ignore_errors=True)
            return
        self.services.update(together)

    def _launch(self, worker: str) -> None:
        try:
            find_command(self.settings["command"])  # before the folder is made
            service = _new_service(self.settings, _worker_folder(worker), worker)
            service.launch_for_another_process()
        except StartError:
            return  # the worker starts its own and reports the problem to the tests that use it
        self.services[worker] = service

    def pytest_configure_node(self, node):
        worker = node.gateway.id
        if worker not in self.services:
            self._launch(worker)
        if worker in self.services:
            node.workerinput[self.WORKERINPUT_KEY] = str(self.services[worker].work)

    def pytest_testnodedown(self, node, error):
        """A worker is done: its service is sent SIGTERM now (its end is awaited at the end of the
        run, so the workers' services stop together)."""
        service = self.services.get(node.gateway.id)
        if service is not None:
            service.begin_stop()

    def pytest_unconfigure(self, config):
        together = [service for service in self.services.values() if service.launcher is not None]
        apart = [service for service in self.services.values() if service.launcher is None]
        for service in apart:
            service.begin_stop()
        if self.launcher is not None:
            stop_together(together, self.launcher)
        for service in apart:
            service.stop()
        for service in self.services.values():
            shutil.rmtree(service.work, ignore_errors=True)
        self.services.clear()


def _worker_folder(worker: str) -> Path:
    """A new temporary folder for the service of xdist worker `worker`, made by the controller."""
    return Path(tempfile.mkdtemp(prefix=f"zipline-sessions-{worker}-"))


def _new_service(settings: dict, work: Path, worker: str, parent_pid: int | None = None) -> ZiplineSessions:
    """The service the options describe, in `work`, for xdist worker `worker` ("" without xdist):
    on the option's port plus the worker's number (gw3: 3), with one worker under xdist."""
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    port = settings["port"] + index if settings["port"] and worker else settings["port"]
    return ZiplineSessions(find_command(settings["command"]), work, port=port,
                           workers=1 if worker else settings["workers"], seed=settings["seed"],
                           error_profile=settings["error_profile"], parent_pid=parent_pid)


def _setting(config, name: str) -> str:
    value = config.getoption(f"zipline_sessions_{name}")
    if value is None and name == "command":
        value = os.environ.get("ZIPLINE_SESSIONS_COMMAND")
    if value is None:
        value = config.getini(f"zipline_sessions_{name}").strip()
        # A path in the ini file is relative to it (a command without a slash is looked up on PATH).
        if value and config.inipath is not None and (name == "seed" or (name == "command" and os.sep in value)):
            value = str(config.inipath.parent / value)
    return value.strip()


def _settings(config) -> dict:
    """The options, checked: a bad one stops the run with one line."""
    raw = {name: _setting(config, name) for name in OPTIONS}
    for name in ("port", "workers"):
        if not raw[name].isdigit() or (name == "workers" and int(raw[name]) < 1) or int(raw[name]) > 65535:
            raise pytest.UsageError(f"zipline-sessions: {name} must be a whole number"
                                    f"{' (1 or more)' if name == 'workers' else ' (0-65535)'}, not {raw[name]!r}")
    if raw["scope"] not in SCOPES:
        raise pytest.UsageError(f"zipline-sessions: scope must be one of {', '.join(SCOPES)}, not {raw['scope']!r}")
    if raw["error_profile"] and raw["error_profile"] not in PROFILES:
        raise pytest.UsageError(f"zipline-sessions: error profile must be one of {', '.join(PROFILES)}, "
                                f"not {raw['error_profile']!r}")
    seed = Path(raw["seed"]).resolve() if raw["seed"] else None
    if seed is not None:
        _check_seed(seed)
    if raw["command"] and shutil.which(raw["command"]) is None:
        raise pytest.UsageError(f"zipline-sessions: the command {raw['command']!r} is not an executable file")
    return {"command": raw["command"], "port": int(raw["port"]), "workers": int(raw["workers"]), "seed": seed,
            "error_profile": raw["error_profile"] or None, "scope": raw["scope"]}


def _check_seed(seed: Path) -> None:
    import json

    try:
        json.loads(seed.read_text())
    except OSError as error:
        raise pytest.UsageError(f"zipline-sessions: cannot read the seed file {seed}: {error.strerror}") from None
    except ValueError as error:
        raise pytest.UsageError(f"zipline-sessions: the seed file {seed} is not JSON: {error}") from None


def find_command(configured: str) -> str:
    """The zipline-sessions command: as configured, else on PATH, else beside this Python."""
    if configured:
        return shutil.which(configured)
    found = shutil.which("zipline-sessions") or shutil.which("zipline-sessions", path=str(Path(sys.executable).parent))
    if found is None:
        raise StartError("zipline-sessions: no zipline-sessions command on PATH; install the service (pipx install "
                         "zipline-sessions) or name it with --zipline-sessions-command or ZIPLINE_SESSIONS_COMMAND")
    return found


@pytest.fixture(scope="session")
def zipline_sessions_server(request, tmp_path_factory):
    """The service of this test session (of this xdist worker), as started; stopped at the end."""
    settings = request.config.stash[_settings_key]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    launched = getattr(request.config, "workerinput", {}).get(WorkersServices.WORKERINPUT_KEY)
    try:
        if launched:  # by the xdist controller (our parent), which stops it
            service = _new_service(settings, Path(launched), worker, parent_pid=os.getppid())
        else:
            service = _new_service(settings, tmp_path_factory.mktemp("zipline-sessions"), worker)
        request.config.stash[_service_key] = service
        if not launched:
            service.launch()
        # requests (about 0.1 s to import) while the service starts, not in the first test.
        import pytest_zipline_sessions.clients  # noqa: F401
        service.wait_until_ready()
    except StartError as error:
        problem = str(error)
    else:
        problem = None
    if problem is not None:
        pytest.fail(problem, pytrace=False)  # outside the except: one line, no chained exception
    yield service
    service.stop()


@pytest.fixture
def zipline_sessions(request, zipline_sessions_server):
    """The service, reset to the seed before this test (or per module, or once: the scope option);
    a test marked zipline_sessions_seed starts from that seed instead."""
    service, scope = zipline_sessions_server, request.config.stash[_settings_key]["scope"]
    marker = request.node.get_closest_marker("zipline_sessions_seed")
    state = request.session.stash.setdefault(_reset_state_key, {"module": None, "marked": False})
    if marker is not None:
        service.reset(marker.args[0] if marker.args else None)
        request.node.stash[_reset_in_setup_key] = True
    elif scope == "function" or state["marked"] or state["module"] is None or (
            scope == "module" and state["module"] != request.node.module):
        service.reset()
        request.node.stash[_reset_in_setup_key] = True
    state.update(module=request.node.module, marked=marker is not None)
    return service


@pytest.fixture
def zipline_login(zipline_sessions):
    """zipline_login(username, password, user_agent=None): a requests.Session logged in as that user
    (its relative URLs go to the service); closed after the test."""
    made = []

    def login(username: str, password: str, user_agent: str | None = None):
        made.append(zipline_sessions.login(username, password, user_agent))
        return made[-1]

    yield login
    for session in made:
        session.close()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    service = item.config.stash.get(_service_key, None)
    item.stash[_log_start_key] = service.log_size() if service is not None else 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used the service gets the service's log of that test in its report."""
    report = yield
    service = item.config.stash.get(_service_key, None)
    uses_it = {"zipline_sessions", "zipline_sessions_server", "zipline_login"} & set(item.fixturenames)
    if report.failed and uses_it and service is not None and service.log_path.exists():
        text = service.log(item.stash.get(_log_start_key, 0))
        if item.stash.get(_reset_in_setup_key, False) and (at := text.find(RESET_LINE)) != -1:
            # The previous test's last access lines may be written after this test began (the
            # service logs a request just after answering it): this test's own begin at its reset.
            text = text[text.rfind("\n", 0, at) + 1:]
        text = text or "(nothing logged during this test)"
        report.sections.append((f"Captured {LOG_SECTION} {call.when}", text))
    return report
