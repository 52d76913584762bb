"""Every secret the service makes, and how each is kept at rest."""

import hashlib
import secrets

from werkzeug.security import check_password_hash, generate_password_hash

# 32 random bytes = 256 bits, as DESIGN.md requires for tokens.
TOKEN_BYTES = 32
SESSION_ID_PREFIX = "sess_"

# Checked against when a login names no known user, so that an unknown user and a
# wrong password take the same time as well as getting the same answer.
_DUMMY_PASSWORD_HASH = generate_password_hash(secrets.token_urlsafe(16))


def new_token() -> str:
    """A fresh API or session token (shown once, never stored)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_session_id() -> str:
    """A fresh public session id; it names a session and is never a credential."""
    return SESSION_ID_PREFIX + secrets.token_urlsafe(12)


def hash_token(token: str) -> str:
    """What is stored for a token: its SHA-256, hex (the token itself is high-entropy)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def hash_password(password: str) -> str:
    """A slow, salted hash (werkzeug's scrypt) of a password."""
    return generate_password_hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    """Check a password; costs the same whether or not there is a hash to check."""
    if password_hash is None:
        check_password_hash(_DUMMY_PASSWORD_HASH, password)
        return False
    return check_password_hash(password_hash, password)
