"""Webhook authentication: x-signature HMAC, Standard Webhooks, body secret, IP allowlist.

Every credential the request presents for an enabled mode must be valid (a wrong one fails the
request even if another is right), and at least one must be present. Comparisons are
constant-time. Nothing here touches the database or HTTP objects.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tradeloop.db import utcnow
from tradeloop.errors import ForbiddenError, UnauthorizedError
from tradeloop.webhooks.models import AuthMode
from tradeloop.webhooks.schemas import WHSEC_PREFIX

SIGNATURE_HEADER = "x-signature"
WEBHOOK_ID_HEADER = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER = "webhook-signature"
STANDARD_WEBHOOKS_TOLERANCE = timedelta(minutes=5)
_CHALLENGE = {"WWW-Authenticate": 'Signature realm="tradeloop-webhook"'}


@dataclass(frozen=True)
class EndpointAuth:
    """What a request to one endpoint must prove."""

    secret: str = field(repr=False)
    modes: frozenset[str]
    ip_allowlist: tuple[str, ...] = ()


class _CredentialError(Exception):
    """A presented credential that does not verify."""


def x_signature(secret: str, body: bytes) -> str:
    """The `x-signature` header value for `body`: sha256=<hex HMAC-SHA256>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key: base64-decoded after a `whsec_` prefix, else the secret's UTF-8 bytes."""
    if secret.startswith(WHSEC_PREFIX):
        return base64.b64decode(secret.removeprefix(WHSEC_PREFIX))
    return secret.encode()


def standard_webhooks_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `webhook-signature` entry: v1,<base64 HMAC-SHA256 of "id.timestamp.body">."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_ip(client_ip: str | None, allowlist: Sequence[str]) -> None:
    """ForbiddenError unless the allowlist is empty or contains the client's address."""
    if not allowlist:
        return
    try:
        address = ipaddress.ip_address(client_ip or "")
    except ValueError:
        raise ForbiddenError("Client address is not in this endpoint's IP allowlist",
                             code="ip_not_allowed") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    networks = (ipaddress.ip_network(cidr, strict=False) for cidr in allowlist)
    if not any(address in network for network in networks):
        raise ForbiddenError("Client address is not in this endpoint's IP allowlist",
                             code="ip_not_allowed", details={"client_ip": str(address)})


def verify_request(*, auth: EndpointAuth, raw_body: bytes, headers: Mapping[str, str],
                   payload: Any, client_ip: str | None = None,
                   now: datetime | None = None) -> str:
    """Check the caller; returns the mode that authenticated it.

    `payload` is the parsed JSON body (anything, or None when it did not parse) for the body
    secret. Raises ForbiddenError (IP) or UnauthorizedError (missing/invalid credentials).
    """
    check_ip(client_ip, auth.ip_allowlist)
    lowered = {key.lower(): value for key, value in headers.items()}
    verified: list[str] = []
    try:
        for mode in _present_modes(auth.modes, lowered, payload):
            _VERIFIERS[mode](auth.secret, raw_body, lowered, payload, now or utcnow())
            verified.append(mode)
    except _CredentialError as exc:
        raise UnauthorizedError(str(exc), code="invalid_signature", headers=_CHALLENGE) from None
    if not verified:
        raise UnauthorizedError(
            "Missing webhook credentials; this endpoint accepts: " + ", ".join(
                _DESCRIPTIONS[mode] for mode in sorted(auth.modes)),
            code="missing_signature", headers=_CHALLENGE)
    return verified[0]


def _present_modes(modes: Collection[str], headers: Mapping[str, str],
                   payload: Any) -> list[str]:
    present = []
    if AuthMode.X_SIGNATURE in modes and SIGNATURE_HEADER in headers:
        present.append(AuthMode.X_SIGNATURE.value)
    std_headers = (WEBHOOK_ID_HEADER, WEBHOOK_TIMESTAMP_HEADER, WEBHOOK_SIGNATURE_HEADER)
    if AuthMode.STANDARD_WEBHOOKS in modes and any(h in headers for h in std_headers):
        present.append(AuthMode.STANDARD_WEBHOOKS.value)
    if AuthMode.BODY_SECRET in modes and isinstance(payload, dict) and "secret" in payload:
        present.append(AuthMode.BODY_SECRET.value)
    return present


def _verify_x_signature(secret: str, body: bytes, headers: Mapping[str, str], _payload: Any,
                        _now: datetime) -> None:
    presented = headers[SIGNATURE_HEADER].strip()
    expected = x_signature(secret, body)
    # A bare hex digest is accepted too (seed 004's examples send one).
    candidate = presented if presented.startswith("sha256=") else "sha256=" + presented
    if not hmac.compare_digest(candidate.encode(), expected.encode()):
        raise _CredentialError("x-signature does not match the body (expected sha256=<hex "
                               "HMAC-SHA256 of the raw body with the endpoint secret>)")


def _verify_standard_webhooks(secret: str, body: bytes, headers: Mapping[str, str],
                              _payload: Any, now: datetime) -> None:
    msg_id = headers.get(WEBHOOK_ID_HEADER, "").strip()
    raw_timestamp = headers.get(WEBHOOK_TIMESTAMP_HEADER, "").strip()
    signatures = headers.get(WEBHOOK_SIGNATURE_HEADER, "").split()
    if not (msg_id and raw_timestamp and signatures):
        raise _CredentialError("Standard Webhooks needs webhook-id, webhook-timestamp and "
                               "webhook-signature together")
    if not raw_timestamp.isdigit() or len(raw_timestamp) > 12:
        raise _CredentialError("webhook-timestamp must be unix seconds")
    timestamp = int(raw_timestamp)
    if abs(now.timestamp() - timestamp) > STANDARD_WEBHOOKS_TOLERANCE.total_seconds():
        raise _CredentialError("webhook-timestamp is more than 5 minutes from the server time")
    try:
        expected = standard_webhooks_signature(secret, msg_id, timestamp, body).encode()
    except (binascii.Error, ValueError):
        raise _CredentialError("the endpoint secret is not valid whsec_ base64") from None
    # Several space-separated signatures (key rotation); other versions are skipped.
    if not any(hmac.compare_digest(sig.encode(), expected)
               for sig in signatures if sig.startswith("v1,")):
        raise _CredentialError("No webhook-signature entry matches (v1,<base64 HMAC-SHA256 "
                               "of 'id.timestamp.body'>)")


def _verify_body_secret(secret: str, _body: bytes, _headers: Mapping[str, str], payload: Any,
                        _now: datetime) -> None:
    presented = payload.get("secret")
    if not isinstance(presented, str) or not hmac.compare_digest(
            presented.encode("utf-8", "surrogatepass"), secret.encode()):
        raise _CredentialError("The body's secret does not match this endpoint's secret")


_VERIFIERS = {
    AuthMode.X_SIGNATURE.value: _verify_x_signature,
    AuthMode.STANDARD_WEBHOOKS.value: _verify_standard_webhooks,
    AuthMode.BODY_SECRET.value: _verify_body_secret,
}
_DESCRIPTIONS = {
    AuthMode.BODY_SECRET.value: "a 'secret' field in the JSON body",
    AuthMode.STANDARD_WEBHOOKS.value: "Standard Webhooks headers (webhook-id, "
                                      "webhook-timestamp, webhook-signature)",
    AuthMode.X_SIGNATURE.value: "an 'x-signature: sha256=<hex>' header",
}
