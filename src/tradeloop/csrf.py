"""Cross-site request forgery protection for every state-changing request, pages and API alike.

One rule, enforced by `CsrfMiddleware` before routing: a request with any method but GET, HEAD,
OPTIONS or TRACE that a browser could have sent on its own (no `Authorization: Bearer`, the
one thing a cross-site page cannot add without a CORS preflight, which tradeloop never grants)
must show that it comes from this site:

- an `Origin` header naming this site (the request's own scheme and host, or PUBLIC_URL's)
  passes, any other `Origin` (`null` included) is refused;
- without `Origin`, a `Referer` on this site passes and one elsewhere is refused;
- with neither, a request carrying one of our cookies needs the CSRF token: the signed
  double-submit token of the `tradeloop_csrf` cookie, repeated in the `X-CSRF-Token` header or,
  for a URL-encoded form, in the `_csrf_token` field that every page's forms carry. A request
  with no cookie and no bearer token authenticates nothing that a forger could borrow.

Browsers send `Origin` with every cross-origin request and every same-origin one but GET/HEAD,
so the token is the fallback for the rare client that strips both headers. Paths with their own
authentication (the HMAC-signed webhooks) are exempt.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from tradeloop.errors import send_error
from tradeloop.request_bodies import is_under, read_and_replay

CSRF_COOKIE = "tradeloop_csrf"
CSRF_FIELD = "_csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
MAX_FORM_FIELDS = 1000
_FORM_TYPE = "application/x-www-form-urlencoded"


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


def is_valid_csrf(cookie: str | None, submitted: str | None, secret_key: str) -> bool:
    """True when the submitted token matches the cookie and carries our signature."""
    if not cookie or not submitted:
        return False
    # As bytes: compare_digest refuses str with non-ASCII characters (a forged header could).
    return (hmac.compare_digest(cookie.encode(), submitted.encode())
            and _is_signed(cookie, secret_key))


def _is_signed(token: str, secret_key: str) -> bool:
    try:
        _serializer(secret_key).loads(token)
    except BadSignature:
        return False
    return True


def origin_of(url: str) -> str | None:
    """`scheme://host[:port]` of an absolute URL, lower-cased; None for anything else."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


MISSING_TOKEN = (f"Cross-site request refused: send the page's CSRF token (the {CSRF_HEADER} "
                 f"header or the {CSRF_FIELD} form field), or use an API token")


class CsrfMiddleware:
    """Refuse (403 `csrf_failed`) state-changing requests that may come from another site."""

    def __init__(self, app: ASGIApp, *, secret_key: Callable[[], str], public_url: str,
                 cookie_names: Iterable[str], exempt_paths: Iterable[str] = ()):
        self.app = app
        # Read when a token is checked: generated secrets may be loaded after the app is built.
        self.secret_key = secret_key
        self.public_origin = origin_of(public_url)
        # Any of these cookies means a browser is talking: a forger could ride on them.
        self.cookie_names = tuple(cookie_names)
        self.exempt_paths = tuple(exempt_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["method"] in SAFE_METHODS
                or self._is_exempt(scope["path"])):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is MISSING_TOKEN and _is_url_encoded_form(headers):
            refusal, receive = await self._form_field_refusal(headers, receive)
        if refusal:
            await send_error(send, 403, "csrf_failed", refusal)
            return
        await self.app(scope, receive, send)

    def _is_exempt(self, path: str) -> bool:
        return any(is_under(path, prefix) for prefix in self.exempt_paths)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """Why the request may be forged (None when it may pass), from its headers alone."""
        if _has_bearer_token(headers.get("authorization", "")):
            return None
        origin = headers.get("origin")
        if origin is not None:
            if self._is_this_site(origin, scope, headers):
                return None
            return f"Cross-site request refused: Origin {origin[:100]!r} is not this site"
        referer = headers.get("referer")
        if referer:
            if self._is_this_site(referer, scope, headers):
                return None
            return "Cross-site request refused: Referer is not this site"
        cookies = cookie_parser(headers.get("cookie", ""))
        if not any(name in cookies for name in self.cookie_names):
            return None
        if is_valid_csrf(cookies.get(CSRF_COOKIE), headers.get(CSRF_HEADER.lower()),
                         self.secret_key()):
            return None
        return MISSING_TOKEN

    async def _form_field_refusal(self, headers: dict[str, str],
                                  receive: Receive) -> tuple[str | None, Receive]:
        # A URL-encoded form without Origin and Referer: read the body (its size and time are
        # bounded by the body guard outside) for the token field, and hand the same body on.
        body, replay = await read_and_replay(receive)
        cookie = cookie_parser(headers.get("cookie", "")).get(CSRF_COOKIE)
        if is_valid_csrf(cookie, _form_field(body, CSRF_FIELD), self.secret_key()):
            return None, replay
        return MISSING_TOKEN, replay

    def _is_this_site(self, url: str, scope: Scope, headers: dict[str, str]) -> bool:
        origin = origin_of(url)
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        return origin is not None and origin in (own, self.public_origin)


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]}


def _form_field(body: bytes, name: str) -> str | None:
    try:
        values = parse_qs(body.decode("latin-1"), max_num_fields=MAX_FORM_FIELDS).get(name)
    except ValueError:  # more fields than any of our forms has: no token worth looking for
        return None
    return values[0] if values else None


def _is_url_encoded_form(headers: dict[str, str]) -> bool:
    return headers.get("content-type", "").lower().startswith(_FORM_TYPE)


def _has_bearer_token(authorization: str) -> bool:
    # The same test as accounts.dependencies.bearer_token: a bearer token, when sent, is the
    # only credential looked at, so the session cookie cannot ride along.
    scheme, _, value = authorization.partition(" ")
    return scheme.lower() == "bearer" and bool(value.strip())
