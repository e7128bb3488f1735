"""Password hashing (argon2) and opaque tokens whose hashes, never secrets, are stored."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verifying against a fixed hash when the email is unknown makes both answers take as long,
# so response timing does not reveal which emails have accounts.
_DUMMY_HASH = _hasher.hash("tradeloop-timing-equaliser")

API_TOKEN_PREFIX = "tl_"  # noqa: S105 - a public marker for secret scanners


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(hashed_password: str | None, password: str) -> bool:
    """Constant-work check: always runs one argon2 verification, even for unknown users."""
    try:
        return _hasher.verify(hashed_password or _DUMMY_HASH, password) and bool(hashed_password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hashed_password: str) -> bool:
    return _hasher.check_needs_rehash(hashed_password)


def new_token(prefix: str = "") -> str:
    """A fresh random token (256 bits) to hand to the user once."""
    return prefix + secrets.token_urlsafe(32)


def token_digest(raw_token: str) -> bytes:
    return hashlib.sha256(raw_token.encode()).digest()
