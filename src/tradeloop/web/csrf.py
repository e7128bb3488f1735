"""CSRF protection for HTML forms: a signed double-submit token (cookie + hidden field)."""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeSerializer

CSRF_COOKIE = "tradeloop_csrf"
CSRF_FIELD = "_csrf_token"


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt="tradeloop-csrf")


def csrf_token(request: Request, secret_key: str) -> str:
    """The token to embed in forms: the visitor's cookie value if valid, else a new one."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and _is_signed(existing, secret_key):
        return existing
    return _serializer(secret_key).dumps(secrets.token_urlsafe(24))


def set_csrf_cookie(response: Response, token: str, *, secure: bool) -> None:
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="lax", secure=secure,
                        path="/")


def is_valid_csrf(request: Request, submitted: str | None, secret_key: str) -> bool:
    """True when the form's token matches the cookie and carries our signature."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted:
        return False
    return hmac.compare_digest(cookie, submitted) and _is_signed(cookie, secret_key)


def _is_signed(token: str, secret_key: str) -> bool:
    try:
        _serializer(secret_key).loads(token)
    except BadSignature:
        return False
    return True
