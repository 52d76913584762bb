"""The floor: GET /api/user/sessions in raw WSGI with the standard library only.

Written for the benchmark, not part of the service: the most a Python process does for this
work (two indexed lookups, one listing, a JSON body), over the same SQLite file and schema.
granian --interface wsgi bench.floor_app:app, with BENCH_DATABASE=/path/to/sessions.db
"""

import hashlib
import json
import os
import sqlite3
from datetime import UTC, datetime

_connection = None
UNAUTHORIZED = json.dumps({"statusCode": 401, "error": "Unauthorized", "message": "Invalid login session"})


def connection() -> sqlite3.Connection:
    global _connection
    if _connection is None:
        _connection = sqlite3.connect(os.environ["BENCH_DATABASE"], check_same_thread=False)
        _connection.execute("PRAGMA busy_timeout=10000")
    return _connection


def timestamp(stored: str) -> str:
    return stored[:10] + "T" + stored[11:23] + "Z"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def app(environ, start_response):
    db = connection()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    token = environ.get("HTTP_AUTHORIZATION", "")
    user = db.execute("SELECT id FROM users WHERE api_token_hash = ?", (sha256(token),)).fetchone()
    if user is None:
        start_response("401 Unauthorized", [("Content-Type", "application/json")])
        return [UNAUTHORIZED.encode()]
    cookies = dict(part.strip().split("=", 1) for part in environ.get("HTTP_COOKIE", "").split(";") if "=" in part)
    current_id = None
    if "zipline_token" in cookies:
        row = db.execute("SELECT id, user_id FROM sessions WHERE token_hash = ? AND expires_at > ?",
                         (sha256(cookies["zipline_token"]), now)).fetchone()
        if row is not None and row[1] == user[0]:
            current_id = row[0]
    rows = db.execute("SELECT id, created_at, ua, client, device FROM sessions WHERE user_id = ? AND expires_at > ? "
                      "ORDER BY created_at, id", (user[0], now)).fetchall()
    current, other = None, []
    for session_id, created_at, ua, client, device in rows:
        item = {"id": session_id, "createdAt": timestamp(created_at), "ua": ua, "client": client, "device": device}
        if session_id == current_id:
            current = item
        else:
            other.append(item)
    body = json.dumps({"current": current, "other": other}, separators=(",", ":")).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
