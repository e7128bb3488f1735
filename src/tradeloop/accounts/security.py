"""Password hashing (argon2) and opaque tokens whose hashes, never secrets, are stored."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
# Verifying against a fixed hash when the email is unknown makes both answers take as long,
# so response timing does not reveal which emails have accounts.
_DUMMY_HASH = _hasher.hash("tradeloop-timing-equaliser")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _yield_cpu_to_requests() -> None:
    # On Linux niceness is per thread, and argon2's lane threads inherit their caller's: a
    # login's hash then takes the CPU the event loop and other requests leave, instead of
    # starving them of it (elsewhere this is a no-op).
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


HASHING_NICENESS = 5
# One argon2 hash runs `parallelism` threads. More hashes at once than the cores can run
# only slow each one down (the last of N concurrent logins finishes no sooner): the others
# queue for one of these threads.
_HASHING = ThreadPoolExecutor(max(1, _cores() // _hasher.parallelism),
                              thread_name_prefix="argon2",
                              initializer=_yield_cpu_to_requests)

API_TOKEN_PREFIX = "tl_"  # noqa: S105 - a public marker for secret scanners


def hash_password(password: str) -> str:
    return _HASHING.submit(_hasher.hash, password).result()


def verify_password(hashed_password: str | None, password: str) -> bool:
    """Constant-work check: always runs one argon2 verification, even for unknown users."""
    try:
        verified = _HASHING.submit(_hasher.verify, hashed_password or _DUMMY_HASH,
                                   password).result()
    except (VerificationError, InvalidHashError):
        return False
    return verified and bool(hashed_password)


def needs_rehash(hashed_password: str) -> bool:
    return _hasher.check_needs_rehash(hashed_password)


def new_token(prefix: str = "") -> str:
    """A fresh random token (256 bits) to hand to the user once."""
    return prefix + secrets.token_urlsafe(32)


def token_digest(raw_token: str) -> bytes:
    return hashlib.sha256(raw_token.encode()).digest()
