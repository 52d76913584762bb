"""`flask --app app backup PATH`: a consistent copy of a live SQLite database, made through
SQLite's online backup API while the service keeps writing (README, "Backups").

A copy of the file alone is not a backup: what the WAL still holds is missing from it. The
backup API reads the database as one snapshot (in WAL mode readers never block writers), pages
from the WAL included, into a new file of its own that needs no -wal beside it.
"""

import os
import sqlite3
from typing import NamedTuple

from sqlalchemy.engine import URL

from zipline_sessions.storage.database import SQLITE_BUSY_TIMEOUT_MS


class BackupError(Exception):
    """The backup cannot be made; nothing was written at PATH."""


class Backup(NamedTuple):
    path: str
    users: int
    sessions: int
    size: int


def backup_sqlite(url: URL, path: str) -> Backup:
    """Copy the SQLite database at `url` to the new file `path` (0600), all or nothing."""
    source = _sqlite_file(url)
    target = os.path.abspath(path)
    _refuse_target(source, target, path)
    partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{os.getpid()}.partial")
    try:
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as error:
        raise BackupError(f"cannot write in {os.path.dirname(target)} ({error.strerror or error})") from None
    os.close(descriptor)
    try:
        counts = _copy(source, partial)
        _fsync(partial)
        try:
            os.link(partial, target)  # never replaces: fails if PATH appeared meanwhile
        except FileExistsError:
            raise BackupError(f"{path} appeared while the backup ran: nothing written there") from None
        _fsync(os.path.dirname(target))
    finally:
        for leftover in (partial, partial + "-journal"):
            if os.path.lexists(leftover):
                os.unlink(leftover)
    return Backup(target, *counts, os.path.getsize(target))


def _sqlite_file(url: URL) -> str:
    if url.get_backend_name() != "sqlite":
        raise BackupError(f"backup copies a SQLite database; this one is {url.get_backend_name()}: "
                          "use pg_dump and pg_restore (README, \"Backups\")")
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        raise BackupError(f"backup needs a SQLite database file, not {url.database or 'memory'!r}")
    return os.path.abspath(url.database)


def _refuse_target(source: str, target: str, shown: str) -> None:
    """PATH must be new: never a file, folder or link that exists, never the database's own
    files (its -wal would be read as the live database's journal)."""
    own_files = {os.path.realpath(source + suffix) for suffix in ("", "-wal", "-shm", "-journal")}
    if os.path.realpath(target) in own_files:
        raise BackupError(f"{shown} is the database or one of its files: choose another path")
    if os.path.isdir(target) and not os.path.islink(target):
        raise BackupError(f"{shown} is a folder: give the path of a new file in it")
    if os.path.lexists(target):
        raise BackupError(f"{shown} exists{' (a symbolic link)' if os.path.islink(target) else ''}: "
                          "a backup never replaces a file; choose a new path")
    if not os.path.isdir(os.path.dirname(target)):
        raise BackupError(f"the folder of {shown} does not exist")


def _copy(source: str, partial: str) -> tuple[int, int]:
    """One step of the backup API (a single consistent snapshot), then the copy switched to a
    rollback journal so that the file alone is the whole database; checked and counted."""
    if not os.path.isfile(source):
        raise BackupError(f"the database {source} does not exist")
    reader = sqlite3.connect(source, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
    copy = sqlite3.connect(partial)
    try:
        reader.backup(copy)
        copy.execute("PRAGMA journal_mode=DELETE")
        if copy.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupError("the copy failed its integrity check: nothing written")
        users = copy.execute("SELECT count(*) FROM users").fetchone()[0]
        sessions = copy.execute("SELECT count(*) FROM sessions").fetchone()[0]
    except sqlite3.Error as error:
        raise BackupError(f"the backup failed, nothing written: {error}") from None
    finally:
        copy.close()
        reader.close()
    return users, sessions


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
