"""Per-user webhook endpoints: create (secret shown once), read, change, rotate, delete."""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import Any

import structlog
from sqlalchemy.orm import Session

from tradeloop.ownership import OwnedRepository
from tradeloop.webhooks.models import WebhookEndpoint
from tradeloop.webhooks.repository import EndpointStore
from tradeloop.webhooks.schemas import WHSEC_PREFIX, EndpointCreate, EndpointUpdate

log = structlog.get_logger(__name__)


class EndpointRepository(OwnedRepository[WebhookEndpoint]):
    model = WebhookEndpoint
    label = "Webhook endpoint"


def new_secret() -> str:
    """A random `whsec_<base64>` secret: usable as is for x-signature, body secret and
    Standard Webhooks (whose libraries expect exactly this format)."""
    return WHSEC_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_endpoint_key() -> str:
    """The unguessable path segment of `/webhook/{endpoint_key}`."""
    return secrets.token_urlsafe(24)


def create_endpoint(*, session: Session, owner_id: uuid.UUID,
                    data: EndpointCreate) -> WebhookEndpoint:
    """Store a new endpoint; the caller shows its secret once."""
    endpoint = EndpointRepository(session, owner_id).add(WebhookEndpoint(
        name=data.name, endpoint_key=new_endpoint_key(), secret=data.secret or new_secret(),
        auth_modes=[mode.value for mode in data.auth_modes], ip_allowlist=data.ip_allowlist,
        is_active=data.is_active, risk=data.risk.model_dump(mode="json")))
    log.info("webhook_endpoint_created", endpoint_id=str(endpoint.id))
    return endpoint


def list_endpoints(*, session: Session, owner_id: uuid.UUID) -> list[WebhookEndpoint]:
    """The owner's endpoints, oldest first."""
    return EndpointRepository(session, owner_id).list(
        order_by=[WebhookEndpoint.inserted_at, WebhookEndpoint.id])


def get_endpoint(*, session: Session, owner_id: uuid.UUID,
                 endpoint_id: uuid.UUID) -> WebhookEndpoint:
    return EndpointRepository(session, owner_id).get(endpoint_id)


def update_endpoint(*, session: Session, owner_id: uuid.UUID, endpoint_id: uuid.UUID,
                    changes: EndpointUpdate) -> WebhookEndpoint:
    """Apply the fields that were sent; the secret changes only through rotation."""
    endpoint = get_endpoint(session=session, owner_id=owner_id, endpoint_id=endpoint_id)
    sent = changes.model_dump(mode="json", exclude_unset=True)
    for name in ("name", "auth_modes", "ip_allowlist", "is_active", "risk"):
        if name in sent and sent[name] is not None:
            setattr(endpoint, name, sent[name])
    session.flush()
    return endpoint


def rotate_secret(*, session: Session, owner_id: uuid.UUID,
                  endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """Replace the secret at once: the old one stops working when this commits."""
    endpoint = get_endpoint(session=session, owner_id=owner_id, endpoint_id=endpoint_id)
    endpoint.secret = new_secret()
    session.flush()
    log.info("webhook_endpoint_secret_rotated", endpoint_id=str(endpoint.id))
    return endpoint


def delete_endpoint(*, session: Session, owner_id: uuid.UUID, endpoint_id: uuid.UUID) -> None:
    """Delete the endpoint; its signals stay (their endpoint_id becomes NULL)."""
    EndpointRepository(session, owner_id).delete(endpoint_id)


def endpoint_risk(*, session: Session, endpoint_id: uuid.UUID) -> dict[str, Any] | None:
    """The endpoint's risk settings as stored, on the fast path (read for every signal)."""
    return EndpointStore.of_session(session).risk(endpoint_id)
