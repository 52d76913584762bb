"""Load users, API tokens and sessions from a seed file, all of it or none of it.

Format (DESIGN.md): {"users": [{"username", "password"?, "token"?, "admin"?,
"sessions": [{"id"?, "token"?, "ua"?, "createdAt"?, "expiresAt"?}]}]}
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from sqlalchemy import func, insert, select

import credentials
from database import bulk_load_cache, db, insert_many, refresh_planner_statistics, write_transaction
from models import LoginSession, Session, User, utcnow
from useragent import clean_ua, describe

USER_KEYS = {"username", "password", "token", "admin", "sessions"}
SESSION_KEYS = {"id", "token", "ua", "createdAt", "expiresAt"}
CHUNK = 20_000  # rows per INSERT batch, and hashes per existence check


class SeedError(ValueError):
    """The file is refused; the message names the entry at fault."""


class Where:
    """The place of an entry in the file, e.g. users[2].sessions[0]; only spelled out for a message."""

    __slots__ = ("session", "user")

    def __init__(self, user: int, session: int | None = None):
        self.user, self.session = user, session

    def __str__(self) -> str:
        return f"users[{self.user}]" + ("" if self.session is None else f".sessions[{self.session}]")


@dataclass(slots=True)
class SeedSession:
    where: Where
    id: str
    token_hash: str
    ua: str
    created_at: datetime
    expires_at: datetime


@dataclass(slots=True)
class SeedUser:
    where: Where
    username: str
    password: str | None
    token_hash: str | None
    is_admin: bool = False
    sessions: list[SeedSession] = field(default_factory=list)


def read_seed_file(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise SeedError(f"{path}: cannot be read ({error.strerror})") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise SeedError(f"{path}: not valid JSON ({error})") from None


def parse_seed(document: object, ttl_seconds: int, now: datetime,
               max_per_user: int | None = None) -> list[SeedUser]:
    """Check the whole document; every problem names its entry, e.g. users[2].sessions[0].id.

    A user with more than `max_per_user` live sessions is refused (SESSIONS_MAX_PER_USER): a login
    would only end the surplus. Users are new, so the file's sessions are all they have.
    """
    if not isinstance(document, dict) or not isinstance(document.get("users"), list):
        raise SeedError('the file must be a JSON object with a "users" array')
    _no_unknown_keys(document, {"users"}, "the file")
    seen_names: dict[str, tuple] = {}
    seen_ids: dict[str, tuple] = {}
    seen_tokens: dict[str, tuple] = {}
    users = []
    ttl = timedelta(seconds=ttl_seconds)
    for index, entry in enumerate(document["users"]):
        user = _parse_user(entry, Where(index), now, ttl)
        if max_per_user is not None:
            _within_cap(user, now, max_per_user)
        _once(seen_names, user.username, (user.where, "username"))
        if user.token_hash is not None:
            _once(seen_tokens, user.token_hash, (user.where, "token"), secret=True)
        for session in user.sessions:
            _once(seen_ids, session.id, (session.where, "id"))
            _once(seen_tokens, session.token_hash, (session.where, "token"), secret=True)
        users.append(user)
    return users


def store_seed(users: list[SeedUser], hash_passwords=credentials.hash_passwords) -> tuple[int, int]:
    """Insert everything in one transaction after checking nothing clashes with the database,
    then refresh the query planner's statistics (a bulk load leaves them stale)."""
    # Hashed first (argon2id, ~0.1-0.2 s each): the write lock is not held meanwhile.
    hashes = hash_passwords(seed_passwords(users))
    with write_transaction():
        counts = insert_seed(users, hashes)
    refresh_planner_statistics()
    return counts


def seed_passwords(users: list[SeedUser]) -> list[str]:
    """The passwords to hash for insert_seed, in its order."""
    return [user.password for user in users if user.password]


def insert_seed(users: list[SeedUser], password_hashes: list[str]) -> tuple[int, int]:
    """Inside a write transaction: refuse what clashes with the database, then insert the users
    (with the hashes of seed_passwords(users)) and their sessions; (users, sessions) inserted."""
    hashes = iter(password_hashes)
    with bulk_load_cache():
        _refuse_existing(users)
        user_rows = [
            {
                "username": user.username,
                "password_hash": next(hashes) if user.password else None,
                "api_token_hash": user.token_hash,
                "created_at": utcnow(),
                "is_admin": user.is_admin,
            }
            for user in users
        ]
        ids = {}
        for start in range(0, len(user_rows), CHUNK):
            statement = insert(User).returning(User.id, User.username, sort_by_parameter_order=True)
            for row in db.session.execute(statement, user_rows[start : start + CHUNK]):
                ids[row.username] = row.id
        batch, count = [], 0
        for user in users:
            for session in user.sessions:
                client, device = describe(session.ua)
                batch.append({
                    "id": session.id, "token_hash": session.token_hash,
                    "user_id": ids[user.username], "created_at": session.created_at,
                    "expires_at": session.expires_at, "ua": session.ua,
                    "client": client, "device": device,
                })
                if len(batch) == CHUNK:
                    count += _insert_sessions(batch)
        count += _insert_sessions(batch)
    return len(users), count


def seed_empty_database(path: str, ttl_seconds: int, max_per_user: int) -> tuple[int, int] | None:
    """SESSIONS_SEED_FILE at start: load the file when the database has no user; None (and the
    file not read) when it has one. A bad file raises SeedError and stores nothing."""
    if _has_users():
        return None
    users = parse_seed(read_seed_file(path), ttl_seconds, utcnow(), max_per_user=max_per_user)
    hashes = credentials.hash_passwords(seed_passwords(users))
    with write_transaction():
        if _has_users():  # another process seeded it meanwhile (several hosts starting at once)
            return None
        counts = insert_seed(users, hashes)
    refresh_planner_statistics()
    return counts


def _has_users() -> bool:
    return db.session.execute(select(User.id).limit(1)).first() is not None


def _insert_sessions(batch: list) -> int:
    insert_many(Session, batch)
    inserted = len(batch)
    batch.clear()
    return inserted


def _parse_user(entry, where, now, ttl) -> SeedUser:
    if not isinstance(entry, dict):
        raise SeedError(f"{where}: must be an object, not {_kind(entry)}")
    _no_unknown_keys(entry, USER_KEYS, where)
    user = SeedUser(
        where=where,
        username=_text(entry, "username", where, required=True, max_length=255),
        password=_text(entry, "password", where, max_length=1024, secret=True),
        token_hash=_token_hash(entry, where),
        is_admin=_flag(entry, "admin", where),
    )
    sessions = entry.get("sessions", [])
    if not isinstance(sessions, list):
        raise SeedError(f"{where}.sessions: must be an array, not {_kind(sessions)}")
    for index, item in enumerate(sessions):
        user.sessions.append(_parse_session(item, Where(where.user, index), now, ttl))
    return user


def _within_cap(user: SeedUser, now: datetime, max_per_user: int) -> None:
    live = sum(1 for session in user.sessions if session.expires_at > now)
    if live > max_per_user:
        raise SeedError(f"{user.where} {user.username!r}: {live} live sessions, "
                        f"more than SESSIONS_MAX_PER_USER ({max_per_user})")


def _parse_session(entry, where, now, ttl) -> SeedSession:
    if not isinstance(entry, dict):
        raise SeedError(f"{where}: must be an object, not {_kind(entry)}")
    _no_unknown_keys(entry, SESSION_KEYS, where)
    created_at, expires_at = _session_dates(entry, where, now, ttl)
    return SeedSession(
        where=where,
        id=_text(entry, "id", where, max_length=64) or credentials.new_session_id(),
        token_hash=_token_hash(entry, where) or credentials.hash_token(credentials.new_token()),
        ua=_clean_ua(_text(entry, "ua", where, allow_empty=True, nul_ok=True)),
        created_at=created_at,
        expires_at=expires_at,
    )


def _session_dates(entry, where, now, ttl) -> tuple[datetime, datetime]:
    """(createdAt, expiresAt): given or defaulted, and the first always before the second.

    Missing createdAt: the load time, or expiresAt minus the TTL when only a past expiresAt is
    given (an expired session, as it would have been made). Missing expiresAt: load time + TTL.
    """
    created_at, expires_at = _date(entry, "createdAt", where), _date(entry, "expiresAt", where)
    if created_at is not None and created_at > now:
        raise SeedError(f"{where}.createdAt: {entry['createdAt']!r} is in the future")
    if created_at is not None and expires_at is not None and expires_at <= created_at:
        raise SeedError(f"{where}.expiresAt: {entry['expiresAt']!r} is not after createdAt {entry['createdAt']!r}")
    if created_at is None:
        created_at = expires_at - ttl if expires_at is not None and expires_at <= now else now
    return created_at, expires_at or now + ttl


_clean_ua = lru_cache(maxsize=4096)(clean_ua)


def _text(entry, key, where, required=False, max_length=None, allow_empty=False, secret=False,
          nul_ok=False) -> str | None:
    """entry[key] as text, checked; a refusal names the value too, unless it is a `secret`.

    NUL is refused (PostgreSQL cannot store it, and the API refuses it) unless `nul_ok`: a
    token is only hashed, a ua is cleaned.
    """
    value = entry.get(key)
    if value is None:
        if required:
            raise SeedError(f"{where}.{key}: is required")
        return None
    shown = "" if secret else f"{_show(value)} "
    if not isinstance(value, str) or (not value and not allow_empty):
        raise SeedError(f"{where}.{key}: must be a non-empty string" + ("" if secret else f", not {_show(value)}"))
    if max_length is not None and len(value) > max_length:
        raise SeedError(f"{where}.{key}: {shown}is longer than {max_length} characters")
    if not nul_ok and "\x00" in value:
        raise SeedError(f"{where}.{key}: {shown}must not contain a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SeedError(f"{where}.{key}: {shown}is not valid Unicode text") from None
    return value


def _flag(entry, key, where) -> bool:
    """JSON true or false (absent: false); not "true", not 1."""
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise SeedError(f"{where}.{key}: must be true or false")
    return value


def _show(value, limit: int = 60) -> str:
    """repr(value) for a message, cut short when long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _kind(value) -> str:
    """The JSON kind of a misplaced value (named instead of the value, which may hold a secret)."""
    kinds = ((bool, "true or false"), (str, "a string"), (int, "a number"), (float, "a number"),
             (list, "an array"), (dict, "an object"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def _token_hash(entry, where) -> str | None:
    """Any non-empty string is a fixture's token; only its hash is kept (and never shown)."""
    token = _text(entry, "token", where, max_length=1024, secret=True, nul_ok=True)
    return credentials.hash_token(token) if token else None


def _date(entry, key, where) -> datetime | None:
    """An ISO 8601 date; one with no offset is taken as UTC. Stored naive UTC, to the ms."""
    value = entry.get(key)
    if value is None:
        return None
    parsed = parse_date(value) if isinstance(value, str) else None
    if parsed is None:
        raise SeedError(f"{where}.{key}: {value!r} is not an ISO 8601 date")
    return parsed


@lru_cache(maxsize=65536)  # fixtures repeat their dates; a million sessions may share a few
def parse_date(text: str) -> datetime | None:
    """ISO 8601 text as naive UTC to the millisecond (no offset: UTC); None when it is not a date."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed.replace(microsecond=parsed.microsecond // 1000 * 1000)


def _no_unknown_keys(entry: dict, allowed: set, where) -> None:
    if allowed.issuperset(entry):
        return
    unknown = sorted(entry.keys() - allowed)
    if unknown:
        raise SeedError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _once(seen: dict, value: str, place: tuple, secret: bool = False) -> None:
    """Refuse `value` met before; `place` is (Where, field), spelled out only for the message."""
    if value in seen:
        raise SeedError(f"{_spell(place)}: {_name(value, secret)} repeats {_spell(seen[value])}")
    seen[value] = place


def _name(value: str, secret: bool) -> str:
    """How a message names a value: its repr, but a token (a secret, held as its hash) as "token"."""
    return "token" if secret else _show(value)


def _spell(place: tuple) -> str:
    where, field_name = place
    return f"{where}.{field_name}"


def _refuse_existing(users: list[SeedUser]) -> None:
    """Refuse a username, session id or token the database already holds."""
    checks = [
        (User.username, {u.username: (u.where, "username") for u in users}, False),
        (User.api_token_hash, {u.token_hash: (u.where, "token") for u in users if u.token_hash}, True),
        (LoginSession.id, {s.id: (s.where, "id") for u in users for s in u.sessions}, False),
        (LoginSession.token_hash, {s.token_hash: (s.where, "token") for u in users for s in u.sessions}, True),
    ]
    for column, wanted, secret in checks:
        for value in _existing(column, list(wanted)):
            raise SeedError(f"{_spell(wanted[value])}: {_name(value, secret)} already exists in the database")


def _existing(column, values: list) -> list:
    """Which of `values` the column holds: read the column when it is the smaller side."""
    connection = db.session.connection()
    stored = connection.execute(select(func.count()).select_from(column.table)).scalar_one()
    if stored <= len(values):
        held = set(connection.execute(select(column)).scalars())
        return [value for value in values if value in held]
    found = []
    for start in range(0, len(values), CHUNK):
        found += connection.execute(select(column).where(column.in_(values[start : start + CHUNK]))).scalars()
    return found
