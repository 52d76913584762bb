"""Backups: `flask --app app backup PATH` copies a live SQLite database consistently (the restore
drill starts a real server on the copy); PostgreSQL's pg_dump and pg_restore as the README says."""

import os
import re
import subprocess
import threading

import pytest
from conftest import BACKEND, cookie, sqlite_only
from live_server import LiveServer, wait_for
from sqlalchemy.engine import make_url

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WRITERS = 3


def readme_block(title: str) -> str:
    """The shell block that follows `title` in the README."""
    with open(os.path.join(ROOT, "README.md")) as readme:
        text = readme.read()
    return re.search(re.escape(title) + r".*?```sh\n(.*?)```", text, re.DOTALL).group(1)


@sqlite_only
def test_restore_drill_a_backup_taken_under_writes_holds_every_answered_session(tmp_path):
    users = [{"username": f"w{n}", "password": f"writer-password-{n}"} for n in range(WRITERS)]
    server = LiveServer(tmp_path, f"sqlite:///{tmp_path / 'live.db'}", {"users": users}, workers=2,
                        # Room for every login in the hashing queue: the writes race the backup, not each other.
                        env={"SESSIONS_MAX_PER_USER": "10000", "SESSIONS_HASH_QUEUE": "8",
                             "SESSIONS_HASH_QUEUE_WAIT": "60"}).start()
    answered, stop, failures = [], threading.Event(), []

    def write(n: int) -> None:
        while not stop.is_set():
            status, headers, _ = server.request("POST", "/api/auth/login", body=users[n])
            if status != 200:
                failures.append(status)
                return
            answered.append(headers["Set-Cookie"].split(";")[0].split("=", 1)[1])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(WRITERS)]
    copy = tmp_path / "backup" / "sessions-backup.db"
    copy.parent.mkdir()
    try:
        for thread in threads:
            thread.start()
        wait_for(lambda: len(answered) >= 12 or failures, seconds=120)
        before = list(answered)  # every login answered before the backup began
        output = server.flask("backup", str(copy))
        during = len(answered) - len(before)
        wait_for(lambda: len(answered) >= len(before) + during + 3 or failures, seconds=120)  # writes went on after it
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        server.stop()
    assert not failures
    assert re.fullmatch(rf"Backed up {WRITERS} users and \d+ sessions to {copy} \(\d+ bytes\)\.\n", output)
    # The file alone is the backup: no -wal or -shm beside it, and it is no WAL database.
    assert sorted(os.listdir(copy.parent)) == ["sessions-backup.db"]
    assert copy.read_bytes()[18:20] == b"\x01\x01"
    assert copy.stat().st_mode & 0o777 == 0o600
    # Restore: a real server on the copy serves every session answered before the backup began.
    restored = LiveServer(tmp_path, f"sqlite:///{copy}", None, workers=1).start()
    try:
        for token in before:
            status, _, body = restored.request("GET", "/api/user/sessions", cookie(token))
            assert status == 200 and body["current"] is not None
        assert restored.request("GET", "/api/health")[0] == 200
        status, _, _ = restored.request("POST", "/api/auth/login", body=users[0])
        assert status == 200  # and it takes writes
    finally:
        restored.stop()


@sqlite_only
def test_backup_refuses_any_path_but_a_new_file(tmp_path, make_seeded_app):
    app = make_seeded_app()
    database = make_url(app.config["DATABASE_URL"]).database
    runner = app.test_cli_runner()
    folder = tmp_path / "a-folder"
    folder.mkdir()
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    (tmp_path / "link-to-precious").symlink_to(precious)
    (tmp_path / "dangling-link").symlink_to(tmp_path / "nowhere")
    (tmp_path / "link-to-database").symlink_to(database)
    refused = {
        str(folder): "is a folder",
        str(precious): "exists: a backup never replaces a file",
        str(tmp_path / "link-to-precious"): "exists (a symbolic link)",
        str(tmp_path / "dangling-link"): "exists (a symbolic link)",
        str(tmp_path / "link-to-database"): "is the database or one of its files",
        database: "is the database or one of its files",
        database + "-wal": "is the database or one of its files",
        database + "-journal": "is the database or one of its files",
        str(tmp_path / "no-such-folder" / "b.db"): "the folder of",
    }
    size = os.path.getsize(database)
    for path, reason in refused.items():
        result = runner.invoke(args=["backup", path])
        assert result.exit_code == 1, path
        assert result.output.startswith("Error: no backup made: ") and reason in result.output, result.output
    assert precious.read_text() == "keep me" and os.path.getsize(database) == size
    assert not (tmp_path / "nowhere").exists() and not [name for name in os.listdir(tmp_path) if "partial" in name]
    client = app.test_client()
    assert client.get("/api/user/sessions", headers={"Authorization": "tok-alice"}).status_code == 200


@pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL: SESSIONS_TEST_POSTGRES_URL is not set")
def test_pg_dump_and_pg_restore_as_the_readme_says(tmp_path, make_seeded_app, postgres_database):
    app = make_seeded_app()
    assert app.test_cli_runner().invoke(args=["backup", str(tmp_path / "x.db")]).output.endswith(
        'use pg_dump and pg_restore (README, "Backups")\n')
    live = make_url(app.config["DATABASE_URL"])
    restored_name = f"{live.database}_restored"
    libpq = {"SOURCE": live.set(drivername="postgresql").render_as_string(hide_password=False),
             "TARGET": live.set(drivername="postgresql", database=restored_name).render_as_string(hide_password=False),
             "TARGET_NAME": restored_name, "HOST": live.host or "127.0.0.1", "PGUSER": live.username or "root"}
    script = readme_block("**PostgreSQL: pg_dump and pg_restore.**")
    script = (script.replace("postgresql://root@127.0.0.1/zipline_sessions_restored", "$TARGET")
              .replace("postgresql://root@127.0.0.1/zipline_sessions", "$SOURCE")
              .replace("createdb -h 127.0.0.1 zipline_sessions_restored", 'createdb -h "$HOST" "$TARGET_NAME"'))
    try:
        subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env={**os.environ, **libpq},
                       check=True, timeout=120)
        from app import create_app

        restored = create_app({"TESTING": True, "DATABASE_URL": libpq["TARGET"].replace("postgresql://",
                                                                                        "postgresql+psycopg://"),
                               "LOGIN_RATE_LIMIT": "off", "AUTO_MIGRATE": False})
        client = restored.test_client(use_cookies=False)
        listed = client.get("/api/user/sessions", headers={"Authorization": "tok-alice", **cookie("cookie-abc")})
        assert listed.status_code == 200, listed.data
        body = listed.json
        assert body["current"]["id"] == "sess_abc123" and [s["id"] for s in body["other"]] == ["sess_def456"]
        assert client.get("/api/health").json == {"status": "ok"}
        from zipline_sessions.storage.database import db

        with restored.app_context():
            db.engine.dispose()
    finally:
        subprocess.run(["dropdb", "-h", libpq["HOST"], "--if-exists", "--force", restored_name], check=False,
                       env={**os.environ, **libpq})


