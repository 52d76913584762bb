"""The users table's queries: create, find, rename, admin flag, API token and password hash (models.py holds the table)."""

from sqlalchemy import select, update

from models import User
from schemas import storable_text_problem
from zipline_sessions.security import credentials
from zipline_sessions.storage.database import db


def create_user(username: str, password_hash: str | None, is_admin: bool = False) -> tuple[User, str]:
    """Add a user (password hashed beforehand: credentials.hash_password) with a fresh API token;
    returns the user and the token (shown once)."""
    token = credentials.new_token()
    user = User(
        username=username,
        password_hash=password_hash,
        api_token_hash=credentials.hash_token(token),
        is_admin=is_admin,
    )
    db.session.add(user)
    db.session.flush()
    return user, token


def find_user(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def find_user_by_name(username: str) -> User | None:
    if storable_text_problem(username) is not None:
        return None  # no user can have this name, and PostgreSQL would refuse to compare it
    return db.session.execute(select(User).where(User.username == username)).scalar_one_or_none()


def set_admin(user_id: int, is_admin: bool) -> None:
    db.session.execute(update(User).where(User.id == user_id).values(is_admin=is_admin))


def user_is_admin(user_id: int) -> bool:
    """Inside a write transaction: whether the user is (still) an admin."""
    return bool(db.session.execute(select(User.is_admin).where(User.id == user_id)).scalar_one_or_none())


def lock_user(user_id: int) -> str | None:
    """Inside a write transaction: serialise this user's revocations; returns the username.

    PostgreSQL takes the user's row lock here; SQLite already holds the database write lock.
    """
    query = select(User.username).where(User.id == user_id).with_for_update()
    return db.session.execute(query).scalar_one_or_none()


def api_token_is(user_id: int, token: str) -> bool:
    """Inside a write transaction: whether `token` is (still) the user's API token."""
    query = select(User.id).where(User.id == user_id, User.api_token_hash == credentials.hash_token(token))
    return db.session.execute(query).first() is not None


def set_api_token(user_id: int, token: str) -> None:
    """Replace the user's API token: only its hash is stored, and the old one names no one."""
    db.session.execute(update(User).where(User.id == user_id).values(api_token_hash=credentials.hash_token(token)))


def set_password_hash(user_id: int, password_hash: str) -> None:
    db.session.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))


def clear_api_token(user_id: int) -> bool:
    """Inside a write transaction: the user has no API token from now on; whether they had one."""
    query = update(User).where(User.id == user_id, User.api_token_hash.is_not(None)).values(api_token_hash=None)
    return db.session.execute(query).rowcount == 1


def password_hash_of(user_id: int) -> str | None:
    return db.session.execute(select(User.password_hash).where(User.id == user_id)).scalar_one_or_none()


def rename_user(user_id: int, username: str) -> None:
    db.session.execute(update(User).where(User.id == user_id).values(username=username))


def replace_password_hash(user_id: int, old_hash: str, new_hash: str) -> bool:
    """Inside a write transaction: store `new_hash` unless the hash changed meanwhile."""
    statement = update(User).where(User.id == user_id, User.password_hash == old_hash).values(
        password_hash=new_hash)
    return db.session.execute(statement).rowcount == 1
