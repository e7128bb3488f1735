"""Settings → webhook endpoints: the caller's endpoints with their URL and a ready-to-copy
TradingView alert message; create and rotate (the secret is shown once, on the page that
answers), delete, and the endpoint's active flag and risk gates."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from tradeloop.accounts.dependencies import Authenticated
from tradeloop.deps import SessionDep, SettingsDep
from tradeloop.errors import NotFoundError
from tradeloop.settings import Settings
from tradeloop.web.api import FormDep
from tradeloop.web.pages import PageUser, render
from tradeloop.web.signals import not_found_page
from tradeloop.webhooks import endpoints
from tradeloop.webhooks.models import AuthMode, WebhookEndpoint
from tradeloop.webhooks.schemas import EndpointCreate, EndpointUpdate, RiskSettings

router = APIRouter(include_in_schema=False)
PAGE = "/users/settings/webhooks"
SECRET_PLACEHOLDER = "PASTE-YOUR-SECRET-HERE"  # noqa: S105 - a placeholder, not a secret
# The risk fields of webhooks.schemas.RiskSettings, in the order the form shows them, with
# what each one means to a trader (docs/signals.md).
RISK_FIELDS = (
    ("min_score", "Minimum score", "Refuse signals whose metadata score is lower."),
    ("min_confidence", "Minimum confidence", "0 to 1; refuse signals less confident."),
    ("max_open_positions", "Maximum open positions", "Refuse entries beyond this many."),
    ("max_exposure", "Maximum exposure", "Open quantity x entry price, summed."),
    ("cooldown_seconds", "Cooldown (seconds)", "Between two entries on one symbol."),
    ("daily_loss_limit", "Daily loss limit",
     "Stop entering once today's realised loss reaches it."),
    ("position_notional", "Position notional", "Money per paper position (default 1000)."),
    ("gex_wall_buffer_pct", "GEX wall buffer (%)",
     "How near a GEX wall counts as at it (default 0.5)."),
)


def tradingview_message(secret: str | None) -> str:
    """The alert message TradingView posts (docs/tradingview.md §2): its placeholders
    ({{ticker}}, {{close}}, …) are filled in by TradingView when the alert fires."""
    secret_json = json.dumps(secret or SECRET_PLACEHOLDER)
    return "\n".join((
        "{",
        f'  "secret": {secret_json},',
        '  "source": "TradingView",',
        '  "symbol": "{{ticker}}",',
        '  "direction": "{{strategy.market_position}}",',
        '  "timeframe": "{{interval}}",',
        '  "timestamp": "{{timenow}}",',
        '  "price": {{close}},',
        '  "metadata": {"score": 80, "confidence": 0.8, "exchange": "{{exchange}}"}',
        "}"))


def endpoint_url(settings: Settings, endpoint: WebhookEndpoint) -> str:
    return f"{settings.public_url.rstrip('/')}/webhook/{endpoint.endpoint_key}"


def _page(request: Request, session: Session, settings: Settings, auth: Authenticated, *,
          status_code: int = 200, revealed: WebhookEndpoint | None = None,
          **context: Any) -> Response:
    """The page; `revealed`: the endpoint whose new secret this answer shows, this once."""
    rows = endpoints.list_endpoints(session=session, owner_id=auth.user.id)
    cards = [{"endpoint": row, "url": endpoint_url(settings, row),
              "secret": revealed.secret if revealed is not None and revealed.id == row.id
              else None,
              "body_secret": AuthMode.BODY_SECRET.value in row.auth_modes} for row in rows]
    for card in cards:
        card["message"] = tradingview_message(card["secret"])
    return render(request, "webhook_endpoints.html", settings, auth=auth, cards=cards,
                  risk_fields=RISK_FIELDS, status_code=status_code,
                  errors=context.pop("errors", {}), **context)


def _field_errors(exc: ValidationError) -> dict[str, str]:
    return {".".join(str(part) for part in error["loc"]) or "form": error["msg"]
            for error in exc.errors()}


@router.get(PAGE)
def webhook_endpoints_page(request: Request, session: SessionDep, settings: SettingsDep,
                           auth: PageUser) -> Response:
    return _page(request, session, settings, auth)


@router.post(PAGE)
def create_webhook_endpoint(request: Request, form: FormDep, session: SessionDep,
                            settings: SettingsDep, auth: PageUser) -> Response:
    try:
        data = EndpointCreate(name=form.get("name", ""))
    except ValidationError as exc:
        return _page(request, session, settings, auth, status_code=422,
                     errors={"create": _field_errors(exc).get("name", "Invalid name")},
                     name=form.get("name", ""))
    created = endpoints.create_endpoint(session=session, owner_id=auth.user.id, data=data)
    return _page(request, session, settings, auth, revealed=created,
                 notice=f"Endpoint “{created.name}” created.")


def _owned(session: Session, auth: Authenticated, endpoint_id: str) -> uuid.UUID:
    """The id of one of the caller's endpoints; NotFoundError for any other."""
    try:
        found = uuid.UUID(endpoint_id)
    except ValueError:
        raise NotFoundError("Webhook endpoint not found") from None
    return endpoints.get_endpoint(session=session, owner_id=auth.user.id,
                                  endpoint_id=found).id


def _missing(request: Request, settings: Settings, auth: Authenticated) -> Response:
    return not_found_page(request, settings, auth, "Webhook endpoint",
                          ("settings", PAGE, "Back to your webhook endpoints"))


@router.post(PAGE + "/{endpoint_id}/rotate")
def rotate_webhook_secret(endpoint_id: str, request: Request, session: SessionDep,
                          settings: SettingsDep, auth: PageUser) -> Response:
    try:
        rotated = endpoints.rotate_secret(session=session, owner_id=auth.user.id,
                                          endpoint_id=_owned(session, auth, endpoint_id))
    except NotFoundError:
        return _missing(request, settings, auth)
    return _page(request, session, settings, auth, revealed=rotated,
                 notice=f"New secret for “{rotated.name}”: the old one no longer works.")


@router.post(PAGE + "/{endpoint_id}/delete")
def delete_webhook_endpoint(endpoint_id: str, request: Request, session: SessionDep,
                            settings: SettingsDep, auth: PageUser) -> Response:
    try:
        endpoints.delete_endpoint(session=session, owner_id=auth.user.id,
                                  endpoint_id=_owned(session, auth, endpoint_id))
    except NotFoundError:
        return _missing(request, settings, auth)
    return RedirectResponse(PAGE, status_code=303)


def risk_from_form(form: dict[str, str]) -> RiskSettings:
    """The risk settings a form sent: an empty field switches its gate off (or back to its
    default); an unchecked GEX box switches the GEX gate off."""
    values: dict[str, Any] = {name: form.get(name, "").strip() or None
                              for name, _, _ in RISK_FIELDS}
    values["gex_gate"] = form.get("gex_gate") == "on"
    return RiskSettings.model_validate(values)


@router.post(PAGE + "/{endpoint_id}")
def update_webhook_endpoint(endpoint_id: str, request: Request, form: FormDep,
                            session: SessionDep, settings: SettingsDep,
                            auth: PageUser) -> Response:
    try:
        owned = _owned(session, auth, endpoint_id)
    except NotFoundError:
        return _missing(request, settings, auth)
    try:
        changes = EndpointUpdate(risk=risk_from_form(form),
                                 is_active=form.get("is_active") == "on")
    except ValidationError as exc:
        return _page(request, session, settings, auth, status_code=422,
                     errors={str(owned): _field_errors(exc)})
    updated = endpoints.update_endpoint(session=session, owner_id=auth.user.id,
                                        endpoint_id=owned, changes=changes)
    return _page(request, session, settings, auth, notice=f"“{updated.name}” saved.")
