"""Accounts: registration, authentication, tokens, password resets, confirmation.

Services flush but never commit: the caller's unit of work decides. Answers never reveal
whether an email has an account (registration, login and reset all answer alike).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, exists, select, update
from sqlalchemy.orm import Session

from tradeloop.accounts import security
from tradeloop.accounts.models import TokenContext, User, UserToken
from tradeloop.accounts.repository import AccountStore
from tradeloop.accounts.schemas import password_problems
from tradeloop.db import Database, utcnow
from tradeloop.errors import ConflictError, FieldValidationError, UnauthorizedError
from tradeloop.ownership import OwnedRepository

log = structlog.get_logger(__name__)

BOOTSTRAP_ADMIN_EMAIL = "admin@tradeloop.example"
INVALID_CREDENTIALS = "Invalid email or password"

Mailer = Callable[[str, str, str], object]
"""send(to, subject, body); the web and API layers pass one that runs after commit."""


class TokenRepository(OwnedRepository[UserToken]):
    model = UserToken
    label = "Token"


@dataclass(frozen=True)
class TokenLifetimes:
    session: timedelta = timedelta(days=14)
    api: timedelta = timedelta(days=90)
    reset_password: timedelta = timedelta(hours=24)
    confirm: timedelta = timedelta(days=7)

    def for_context(self, context: TokenContext) -> timedelta:
        return getattr(self, context.value)


def normalize_email(email: str) -> str:
    return email.strip().lower()


def ensure_valid_password(password: str, field: str = "password") -> None:
    problems = password_problems(password)
    if problems:
        raise FieldValidationError(
            [{"field": field, "message": "Password " + "; ".join(problems),
              "type": "password_rule"}])


def get_user_by_email(*, session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == normalize_email(email))).first()


def first_admin(*, session: Session) -> User | None:
    """The earliest admin: owner of the default webhook endpoint and the demo strategies."""
    return session.scalars(select(User).where(User.is_admin.is_(True))
                           .order_by(User.inserted_at, User.id).limit(1)).first()


def lock_user(session: Session, user_id: uuid.UUID) -> None:
    """Row-lock the user until the session's transaction ends: serialises another domain's
    changes to what one user owns (signal processing's book). A no-op on SQLite, whose units
    of work hold the write lock from their first statement."""
    AccountStore.of_session(session).lock_user(user_id)


def get_user(*, session: Session, user_id: uuid.UUID) -> User | None:
    return session.get(User, user_id)


def create_user(*, session: Session, email: str, password: str, is_admin: bool = False) -> User:
    """Create an account; ConflictError when the email is taken (for the CLI and admins)."""
    ensure_valid_password(password)
    if get_user_by_email(session=session, email=email) is not None:
        raise ConflictError("A user with this email already exists",
                            code="email_taken", details={"email": normalize_email(email)})
    user = User(email=normalize_email(email), hashed_password=security.hash_password(password),
                is_admin=is_admin)
    session.add(user)
    session.flush()
    log.info("user_created", user_id=str(user.id), is_admin=is_admin)
    return user


def register_user(*, session: Session, email: str, password: str, confirm_url: str,
                  send_mail: Mailer) -> User | None:
    """Self-service sign-up. A taken email gets a notice by mail, and the caller the same answer.

    Returns the new user, or None when the email already had an account.
    """
    existing = get_user_by_email(session=session, email=email)
    if existing is not None:
        ensure_valid_password(password)
        # Hash anyway so the answer takes as long as creating an account would.
        security.hash_password(password)
        send_mail(existing.email, "Someone tried to register with your email",
                  "An attempt was made to create a tradeloop account with this address, "
                  "which already has one. If it was you, log in or reset your password.")
        return None
    user = create_user(session=session, email=email, password=password)
    raw = issue_token(session=session, user=user, context=TokenContext.CONFIRM, sent_to=user.email)
    send_mail(user.email, "Confirm your tradeloop account",
              f"Welcome to tradeloop. Confirm your account by visiting:\n\n{confirm_url}{raw}\n")
    return user


def authenticate(*, session: Session, email: str, password: str) -> User:
    """The user with these credentials; one identical error for a wrong password or email.
    Reads only (see `sign_in`, which also upgrades an outdated hash)."""
    user = get_user_by_email(session=session, email=email)
    if not security.verify_password(user.hashed_password if user else None, password):
        raise UnauthorizedError(INVALID_CREDENTIALS, code="invalid_credentials")
    assert user is not None
    return user


def sign_in(db: Database, *, email: str, password: str, context: TokenContext,
            name: str | None = None, lifetime: timedelta | None = None) -> tuple[str, UserToken]:
    """Check the credentials and issue a token: (the token itself, its stored row).

    The password is checked (argon2: tens of milliseconds of CPU) in a read session and the
    token written in a short unit of work after it, so that on SQLite a login never holds
    the write lock while hashing, and concurrent logins hash in parallel.
    """
    with db.read_session() as session:
        user = authenticate(session=session, email=email, password=password)
    rehashed = (security.hash_password(password)
                if security.needs_rehash(user.hashed_password) else None)
    with db.unit_of_work() as session:
        if rehashed is not None:  # hashed with older parameters: upgrade it now
            session.execute(update(User).where(User.id == user.id)
                            .values(hashed_password=rehashed))
        raw = issue_token(session=session, user=user, context=context, name=name,
                          lifetime=lifetime)
        token = find_token(session=session, raw_token=raw, context=context)
        assert token is not None
    return raw, token


def issue_token(*, session: Session, user: User, context: TokenContext, name: str | None = None,
                sent_to: str | None = None, lifetime: timedelta | None = None) -> str:
    """Store the hash of a new token and return the token itself (shown to the user once)."""
    prefix = security.API_TOKEN_PREFIX if context is TokenContext.API else ""
    raw = security.new_token(prefix)
    token = UserToken(
        user_id=user.id, token=security.token_digest(raw), context=context.value, name=name,
        sent_to=sent_to, expires_at=utcnow() + (lifetime or TokenLifetimes().for_context(context)),
    )
    session.add(token)
    session.flush()
    return raw


def find_token(*, session: Session, raw_token: str, context: TokenContext) -> UserToken | None:
    """The unexpired token with this secret in this context, if any."""
    query = select(UserToken).where(
        UserToken.token == security.token_digest(raw_token),
        UserToken.context == context.value,
        UserToken.expires_at > utcnow(),
    )
    return session.scalars(query).first()


def user_for_token(*, session: Session, raw_token: str,
                   context: TokenContext) -> tuple[User, UserToken] | None:
    """The user a session or API token belongs to (see `record_token_use`)."""
    token = find_token(session=session, raw_token=raw_token, context=context)
    if token is None:
        return None
    user = session.get(User, token.user_id)
    return (user, token) if user else None


def token_use_is_stale(token: UserToken) -> bool:
    """Whether the token's last use is worth recording again.

    Writing on every request would serialise readers on SQLite; a minute's precision is enough.
    """
    return token.last_used_at is None or utcnow() - token.last_used_at > timedelta(minutes=1)


def record_token_use(*, session: Session, token_id: uuid.UUID) -> None:
    """Set the token's last use to now (a token deleted meanwhile is left alone)."""
    session.execute(update(UserToken).where(UserToken.id == token_id)
                    .values(last_used_at=utcnow()))


def list_tokens(*, session: Session, user: User) -> list[UserToken]:
    """The user's live session and API tokens, newest first."""
    return TokenRepository(session, user.id).list(
        UserToken.context.in_([TokenContext.SESSION.value, TokenContext.API.value]),
        UserToken.expires_at > utcnow(),
        order_by=[UserToken.inserted_at.desc()],
    )


def revoke_token(*, session: Session, user: User, token_id: uuid.UUID) -> None:
    """Delete one of the user's tokens; a foreign or unknown id is NotFoundError."""
    TokenRepository(session, user.id).delete(token_id)


def delete_session_token(*, session: Session, raw_token: str) -> None:
    session.execute(delete(UserToken).where(
        UserToken.token == security.token_digest(raw_token),
        UserToken.context == TokenContext.SESSION.value))


def request_password_reset(*, session: Session, email: str, reset_url: str,
                           send_mail: Mailer) -> None:
    """Mail a reset link when the account exists; do nothing visible otherwise."""
    user = get_user_by_email(session=session, email=email)
    if user is None:
        log.info("password_reset_requested_for_unknown_email")
        return
    raw = issue_token(session=session, user=user, context=TokenContext.RESET_PASSWORD,
                      sent_to=user.email)
    send_mail(user.email, "Reset your tradeloop password",
              f"To choose a new password, visit:\n\n{reset_url}{raw}\n\n"
              "The link works once and expires in 24 hours. "
              "If you did not ask for it, ignore this mail.")


def reset_password(*, session: Session, raw_token: str, new_password: str) -> User:
    """Set a new password from a reset link and sign the user out everywhere."""
    token = find_token(session=session, raw_token=raw_token, context=TokenContext.RESET_PASSWORD)
    if token is None:
        raise UnauthorizedError("This reset link is invalid or has expired; ask for a new one",
                                code="invalid_reset_token")
    ensure_valid_password(new_password)
    user = session.get(User, token.user_id)
    assert user is not None
    user.hashed_password = security.hash_password(new_password)
    session.execute(delete(UserToken).where(UserToken.user_id == user.id))
    log.info("password_reset", user_id=str(user.id))
    return user


def change_password(*, session: Session, user: User, current_password: str,
                    new_password: str, keep_token_id: uuid.UUID | None = None) -> None:
    """Change a password after checking the current one; other sessions are signed out."""
    if not security.verify_password(user.hashed_password, current_password):
        raise FieldValidationError([{"field": "current_password",
                                     "message": "Current password is wrong", "type": "invalid"}])
    ensure_valid_password(new_password)
    user.hashed_password = security.hash_password(new_password)
    criteria = [UserToken.user_id == user.id, UserToken.context == TokenContext.SESSION.value]
    if keep_token_id is not None:
        criteria.append(UserToken.id != keep_token_id)
    session.execute(delete(UserToken).where(*criteria))


def confirm_user(*, session: Session, raw_token: str) -> User | None:
    """Mark the account confirmed; None when the link is invalid or expired."""
    token = find_token(session=session, raw_token=raw_token, context=TokenContext.CONFIRM)
    if token is None:
        return None
    user = session.get(User, token.user_id)
    assert user is not None
    user.confirmed_at = user.confirmed_at or utcnow()
    session.delete(token)
    return user


def ensure_admin(*, session: Session) -> tuple[str, str] | None:
    """Create an admin when there is none; returns (email, password) to print once."""
    if session.scalar(select(exists().where(User.is_admin.is_(True)))):
        return None
    email = BOOTSTRAP_ADMIN_EMAIL
    suffix = 1
    while get_user_by_email(session=session, email=email) is not None:
        suffix += 1
        email = BOOTSTRAP_ADMIN_EMAIL.replace("@", f"{suffix}@")
    password = secrets.token_urlsafe(18)
    user = create_user(session=session, email=email, password=password, is_admin=True)
    user.confirmed_at = utcnow()
    return email, password


def purge_expired_tokens(*, session: Session, now: datetime | None = None) -> int:
    """Delete every token past its expiry; returns how many were removed."""
    result = session.execute(delete(UserToken).where(UserToken.expires_at <= (now or utcnow())))
    count = int(getattr(result, "rowcount", 0) or 0)
    log.info("expired_tokens_purged", count=count)
    return count
