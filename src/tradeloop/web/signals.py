"""Signal and position pages: the caller's signals with their decisions (filtered, paged),
one signal in full (its sanitised body, the context the decision used, every risk gate's
verdict, the position), and the paper book (open and closed positions, P&L, "close")."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import or_
from sqlalchemy.orm import Session

from tradeloop.accounts.dependencies import Authenticated
from tradeloop.deps import SessionDep, SettingsDep
from tradeloop.errors import NotFoundError
from tradeloop.market_context.cache import snapshots_of
from tradeloop.settings import Settings
from tradeloop.signals import service as signals
from tradeloop.signals.models import ProcessingError, Signal, SignalOrigin, SignalStatus
from tradeloop.trading import service as trading
from tradeloop.trading.models import Decision, Position, PositionStatus
from tradeloop.web.pages import PageUser, render

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
# The risk gates of trading.rules.check_gates: each one's threshold and the value it judged.
GATES = (("min_score", "score"), ("min_confidence", "confidence"),
         ("max_open_positions", "open_positions"), ("max_exposure", "exposure_after"),
         ("cooldown_seconds", "seconds_since_last_entry"),
         ("daily_loss_limit", "realized_pnl_today"), ("gex_gate", "gex"))


def _choice(value: str | None, allowed: type[SignalStatus] | type[SignalOrigin]) -> str | None:
    """A filter value the list knows, else no filter (a stale link still shows a page)."""
    return value if value in {member.value for member in allowed} else None


def _offset(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


@dataclass(frozen=True)
class Pager:
    """Where the previous and next pages of a filtered listing are (None: no such page)."""

    offset: int
    total: int
    shown: int
    previous: str | None
    next: str | None


def pager(path: str, filters: dict[str, str | None], offset: int, total: int,
          shown: int) -> Pager:
    """Links to the neighbouring pages, keeping the filters."""
    def link(at: int) -> str:
        query = {key: value for key, value in filters.items() if value}
        if at:
            query["offset"] = str(at)
        return f"{path}?{urlencode(query)}" if query else path

    return Pager(offset, total, shown,
                 link(max(offset - PAGE_SIZE, 0)) if offset > 0 else None,
                 link(offset + PAGE_SIZE) if offset + PAGE_SIZE < total else None)


def decisions_by_signal(session: Session, owner_id: uuid.UUID,
                        signal_ids: list[uuid.UUID]) -> dict[uuid.UUID, Decision]:
    """The latest decision of each listed signal (one query for the whole page)."""
    if not signal_ids:
        return {}
    rows = trading.DecisionRepository(session, owner_id).list(
        Decision.signal_id.in_(signal_ids), order_by=[Decision.created_at])
    return {row.signal_id: row for row in rows if row.signal_id is not None}


@router.get("/signals")
def signals_page(request: Request, session: SessionDep, settings: SettingsDep,
                 auth: PageUser) -> Response:
    query = request.query_params
    filters = {"status": _choice(query.get("status"), SignalStatus),
               "origin": _choice(query.get("origin"), SignalOrigin),
               "symbol": (query.get("symbol") or "").strip().upper()[:32] or None}
    offset = _offset(query.get("offset"))
    rows, total = signals.list_signals(session=session, owner_id=auth.user.id,
                                       limit=PAGE_SIZE, offset=offset, **filters)
    return render(request, "signals.html", settings, auth=auth, signals=rows,
                  decisions=decisions_by_signal(session, auth.user.id, [r.id for r in rows]),
                  filters=filters, statuses=list(SignalStatus), origins=list(SignalOrigin),
                  pages=pager("/signals", filters, offset, total, len(rows)))


def not_found_page(request: Request, settings: Settings, auth: Authenticated, what: str,
                   back: tuple[str, str, str]) -> Response:
    """A 404 page for a missing or another user's row (they look the same)."""
    nav, url, label = back
    return render(request, "signals_not_found.html", settings, auth=auth, status_code=404,
                  title=f"{what} not found", message=f"You have no such {what.lower()}.",
                  back_nav=nav, back_url=url, back_label=label)


def sanitised_body(signal: Signal) -> str:
    """The signal as its sender's body, as stored: the secret was removed at intake."""
    body = {"source": signal.source, "symbol": signal.symbol,
            "direction": signal.raw_direction, "timeframe": signal.timeframe,
            "timestamp": signal.signal_time.isoformat(),
            "price": None if signal.price is None else str(signal.price),
            "id": signal.idempotency_key, "metadata": signal.metadata_}
    return json.dumps(body, indent=2, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class GateVerdict:
    """One risk gate of a decision: its threshold, the value it judged and its verdict."""

    name: str
    threshold: Any
    value: Any
    verdict: str  # passed | refused | off | not reached
    reason: str | None = None


def gate_verdicts(decision: Decision) -> list[GateVerdict]:
    """Every gate's verdict: market hours first, then trading.rules' risk gates. A decision
    that never reached them (HOLD, EXIT, no price, market closed) records no gate values."""
    inputs = decision.inputs or {}
    market_open = inputs.get("market_open")
    verdicts = [GateVerdict("market_hours", None, inputs.get("market_hours"),
                            "not reached" if market_open is None
                            else "passed" if market_open else "refused")]
    values = inputs.get("gates") or {}
    for gate, judged in GATES:
        refusal = next((r for r in decision.reasons if r.startswith(f"{gate}:")), None)
        threshold = values.get(gate)
        if not values:
            verdict = "not reached"
        elif refusal:
            verdict = "refused"
        elif threshold is None or threshold is False:
            verdict = "off"
        else:
            verdict = "passed"
        verdicts.append(GateVerdict(gate, threshold, values.get(judged), verdict, refusal))
    return verdicts


def _signal_positions(session: Session, owner_id: uuid.UUID,
                      signal_id: uuid.UUID) -> list[Position]:
    return trading.PositionRepository(session, owner_id).list(
        or_(Position.signal_id == signal_id, Position.closing_signal_id == signal_id),
        order_by=[Position.opened_at])


@router.get("/signals/{signal_id}")
def signal_page(signal_id: str, request: Request, session: SessionDep, settings: SettingsDep,
                auth: PageUser) -> Response:
    owner = auth.user.id
    try:
        signal = signals.get_signal(session=session, owner_id=owner,
                                    signal_id=uuid.UUID(signal_id))
    except (ValueError, NotFoundError):
        return not_found_page(request, settings, auth, "Signal",
                              ("signals", "/signals", "Back to your signals"))
    decisions, _ = trading.list_decisions(session=session, owner_id=owner, signal_id=signal.id)
    errors = signals.ProcessingErrorRepository(session, owner).list(
        ProcessingError.signal_id == signal.id, order_by=[ProcessingError.received_at])
    return render(request, "signal_detail.html", settings, auth=auth, signal=signal,
                  body=sanitised_body(signal),
                  decisions=[(d, gate_verdicts(d)) for d in decisions],
                  snapshots=snapshots_of(session=session, owner_id=owner, signal_id=signal.id),
                  positions=_signal_positions(session, owner, signal.id),
                  processing_errors=errors, as_json=_as_json)


def _as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@router.get("/positions")
def positions_page(request: Request, session: SessionDep, settings: SettingsDep,
                   auth: PageUser) -> Response:
    query = request.query_params
    status = query.get("status") if query.get("status") in {s.value for s in PositionStatus} \
        else PositionStatus.OPEN.value
    offset = _offset(query.get("offset"))
    rows, total = trading.list_positions(session=session, owner_id=auth.user.id,
                                         status=status, limit=PAGE_SIZE, offset=offset)
    return render(request, "positions.html", settings, auth=auth, positions=rows,
                  status=status, totals=trading.position_totals(session=session,
                                                                owner_id=auth.user.id),
                  pages=pager("/positions", {"status": status}, offset, total, len(rows)))
