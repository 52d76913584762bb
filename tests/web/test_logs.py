"""The access log: a forged User-Agent cannot forge fields of the access line (real server)."""

import re

import pytest
from conftest import SEED
from live_server import LiveServer

from zipline_sessions.web.logs import escape

# serve.py's ACCESS_LOG_FORMAT, read back: a quoted field is `"` then escaped characters then `"`.
QUOTED = r'"((?:[^"\\]|\\.)*)"'
LINE = re.compile(rf'^(\S+) \[([^\]]+)\] {QUOTED} (\d{{3}}) (\d+\.\d)ms {QUOTED}$')
FORGED = [
    'curl/8.5.0" 200 0.1ms "forged',  # closes the field and writes a status of its own
    'x\\" 500 1.0ms "\\',  # backslashes that would turn the closing quote into text
    'a\ttab',  # a control character (the only one a header may hold; Granian refuses the others)
]


def unescape(text: str) -> str:
    return re.sub(r'\\(x[0-9a-f]{2}|.)', lambda m: chr(int(m[1][1:], 16)) if len(m[1]) == 3 else m[1], text)


@pytest.mark.parametrize("ua", FORGED)
def test_escape_round_trips(ua):
    assert '"' not in escape(ua).replace('\\"', "")
    assert unescape(escape(ua)) == ua


def test_a_forged_user_agent_cannot_forge_fields_of_the_access_line(tmp_path, database_url):
    server = LiveServer(tmp_path, database_url, SEED, workers=1).start()
    try:
        for ua in FORGED:
            assert server.request("GET", "/api/user/sessions", {"User-Agent": ua})[0] == 401
    finally:
        server.stop()
    lines = [line for line in server.log.read_text().splitlines() if "/api/user/sessions HTTP/1.1" in line]
    forged = [LINE.match(line) for line in lines[-len(FORGED):]]
    assert all(forged), lines
    # Each line splits into exactly its fields: the true status, and the User-Agent as sent.
    assert [(m[3], m[4], unescape(m[6])) for m in forged] == [
        ("GET /api/user/sessions HTTP/1.1", "401", ua) for ua in FORGED]


def test_each_stream_holds_only_the_kinds_of_line_the_readme_names(tmp_path):
    import http.client
    import json
    import os
    import subprocess
    import sys
    import time

    from live_server import ROOT, free_port

    port = free_port()
    env = {**os.environ, "SESSIONS_DATABASE_URL": f"sqlite:///{tmp_path / 'logs.db'}", "SESSIONS_WORKERS": "1",
           "SESSIONS_BIND": f"127.0.0.1:{port}", "SESSIONS_SEED_FILE": str(tmp_path / "seed.json")}
    (tmp_path / "seed.json").write_text(json.dumps(SEED))
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        process = subprocess.Popen([sys.executable, "serve.py"], cwd=ROOT, env=env, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 90
        while "ready at" not in (tmp_path / "err").read_text() and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "err").read_text()
            time.sleep(0.05)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/api/auth/login", body=json.dumps({"username": "alice", "password": "wrong"}),
                           headers={"User-Agent": FORGED[0], "Content-Type": "application/json"})
        assert connection.getresponse().status == 401
        connection.close()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    out, err = (tmp_path / "out").read_text().splitlines(), (tmp_path / "err").read_text().splitlines()
    granian = re.compile(r"^\[(CRITICAL|ERROR|WARNING|INFO|DEBUG)\] ")
    assert all(granian.match(line) or LINE.match(line) for line in out), out
    assert any(LINE.match(line) for line in out) and any(granian.match(line) for line in out)
    own = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] (CRITICAL|ERROR|WARNING|INFO|DEBUG) in \w+: ")
    events = [json.loads(line) for line in err if line.startswith("{")]
    assert all(line.startswith(("{", "zipline-sessions: ")) or own.match(line) for line in err), err
    assert [event["event"] for event in events] == ["login.failure"]
    assert any("At start (SESSIONS_AUTO_MIGRATE): Upgraded the database schema" in line for line in err)
    assert any("Seeded 2 users" in line for line in err)
