"""Live-signal metrics (seed 004's /metrics shapes) and their Prometheus form.

Every number is computed from the database when asked: signals, decisions and
context_snapshots carry their own timings and cache flags, so any API process answers the
same, whichever worker did the processing, and nothing is lost at a restart. Latency
percentiles cover the newest METRICS_LATENCY_WINDOW rows of each stage.

`owner_id=None` means every user (admins and the METRICS_TOKEN scraper); otherwise only the
owner's rows count.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from tradeloop.db import utcnow
from tradeloop.market_context.models import ContextSnapshot
from tradeloop.signals.models import ProcessingError, Signal, SignalStatus
from tradeloop.trading.models import Decision, Position, PositionStatus

PERCENTILES = (50, 95, 99)
STAGES = ("ingest", "decision", "endToEnd")
# Stages of processing_errors written at intake (the webhook answered REJECTED or 422).
INTAKE_STAGES = ("validation", "replay", "deduplication")


def _owned(query: Select[Any], model: Any, owner_id: uuid.UUID | None) -> Select[Any]:
    return query if owner_id is None else query.where(model.user_id == owner_id)


def _number(value: Decimal | float | int | None) -> float:
    # JSON numbers for dashboards; exact decimals stay available on /api/v1/positions.
    return float(value or 0)


def signal_metrics(session: Session, owner_id: uuid.UUID | None) -> dict[str, Any]:
    """Seed 004's signals block: total, accepted, rejected and the acceptance rate.

    Accepted and rejected are decisions: a stored signal is accepted when processing acted on
    it (ENTER, EXIT, REVERSE, HOLD) and rejected when a market-hours or risk gate refused it.
    The rate is accepted / (accepted + rejected), a fraction from 0 to 1.
    """
    by_status = dict(session.execute(_owned(
        select(Signal.status, func.count()).group_by(Signal.status), Signal, owner_id)).all())
    intake = session.scalar(_owned(
        select(func.count()).select_from(ProcessingError)
        .where(ProcessingError.stage.in_(INTAKE_STAGES)), ProcessingError, owner_id))
    accepted = int(by_status.get(SignalStatus.PROCESSED.value, 0))
    rejected = int(by_status.get(SignalStatus.REJECTED.value, 0))
    decided = accepted + rejected
    return {"totalSignals": int(sum(by_status.values())), "acceptedSignals": accepted,
            "rejectedSignals": rejected,
            "acceptanceRate": round(accepted / decided, 4) if decided else 0,
            "queuedSignals": int(by_status.get(SignalStatus.QUEUED.value, 0)
                                 + by_status.get(SignalStatus.PROCESSING.value, 0)),
            "failedSignals": int(by_status.get(SignalStatus.FAILED.value, 0)),
            "refusedAtIntake": int(intake or 0)}


def position_metrics(session: Session, owner_id: uuid.UUID | None) -> dict[str, Any]:
    """Seed 004's positions block; exposure is |quantity x entry price| of open positions."""
    is_open = Position.status == PositionStatus.OPEN.value
    open_count, exposure, unrealized = session.execute(_owned(
        select(func.count(), func.sum(func.abs(Position.quantity * Position.entry_price)),
               func.sum(Position.unrealized_pnl)).where(is_open), Position, owner_id)).one()
    closed_count, realized = session.execute(_owned(
        select(func.count(), func.sum(Position.realized_pnl)).where(~is_open), Position,
        owner_id)).one()
    return {"openPositions": int(open_count or 0), "totalExposure": _number(exposure),
            "unrealizedPnL": _number(unrealized), "realizedPnL": _number(realized),
            "closedPositions": int(closed_count or 0)}


def percentiles(samples: Sequence[float]) -> dict[str, Any]:
    """count, p50/p95/p99 and max in milliseconds (None without samples)."""
    if not samples:
        return {"count": 0, **{f"p{p}": None for p in PERCENTILES}, "max": None}
    values = np.asarray(samples, dtype=np.float64)
    found = np.percentile(values, PERCENTILES)
    return {"count": len(values),
            **{f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, found, strict=True)},
            "max": round(float(values.max()), 3)}


def latency_metrics(session: Session, owner_id: uuid.UUID | None,
                    window: int) -> dict[str, Any]:
    """p50/p95/p99 per stage over the newest `window` rows of each.

    ingest: the webhook request until its signal row is ready to insert (signals.ingest_ms);
    decision: one signal's processing — context, gates, position, decision row
    (decisions.latency_ms); endToEnd: received until processed, queue wait included
    (signals.processed_at - received_at).
    """
    ingest = session.scalars(_owned(
        select(Signal.ingest_ms).where(Signal.ingest_ms.is_not(None))
        .order_by(Signal.received_at.desc()).limit(window), Signal, owner_id)).all()
    decision = session.scalars(_owned(
        select(Decision.latency_ms).where(Decision.latency_ms.is_not(None))
        .order_by(Decision.created_at.desc()).limit(window), Decision, owner_id)).all()
    spans = session.execute(_owned(
        select(Signal.received_at, Signal.processed_at)
        .where(Signal.processed_at.is_not(None),
               Signal.status.in_([SignalStatus.PROCESSED.value, SignalStatus.REJECTED.value]))
        .order_by(Signal.processed_at.desc()).limit(window), Signal, owner_id)).all()
    end_to_end = [(done - received).total_seconds() * 1000 for received, done in spans]
    return {"unit": "ms", "window": window, "ingest": percentiles(ingest),
            "decision": percentiles(decision), "endToEnd": percentiles(end_to_end)}


def context_metrics(session: Session, owner_id: uuid.UUID | None,
                    since: datetime) -> dict[str, Any]:
    """Cache hit rate and degraded decisions over the context snapshots since `since`."""
    recent = ContextSnapshot.created_at >= since
    total, hits, degraded = session.execute(_owned(
        select(func.count(), func.count().filter(ContextSnapshot.cache_hit.is_(True)),
               func.count().filter(ContextSnapshot.degraded.is_(True))).where(recent),
        ContextSnapshot, owner_id)).one()
    reasons: Counter[str] = Counter()
    for found in session.scalars(_owned(
            select(ContextSnapshot.degraded_reasons)
            .where(recent, ContextSnapshot.degraded.is_(True))
            .order_by(ContextSnapshot.created_at.desc()).limit(1000), ContextSnapshot,
            owner_id)):
        reasons.update(item.get("kind", "unknown") for item in found or [])
    return {"since": since.isoformat(), "decisions": int(total or 0),
            "cacheHits": int(hits or 0),
            "cacheHitRate": round(hits / total, 4) if total else None,
            "degradedDecisions": int(degraded or 0), "degradedReasons": dict(reasons)}


def all_metrics(session: Session, owner_id: uuid.UUID | None, *, window: int,
                context_window: timedelta) -> dict[str, Any]:
    """Seed 004's full snapshot (signals, positions, latency), plus the context block."""
    return {"signals": signal_metrics(session, owner_id),
            "positions": position_metrics(session, owner_id),
            "latency": latency_metrics(session, owner_id, window),
            "context": context_metrics(session, owner_id, utcnow() - context_window),
            "timestamp": utcnow().isoformat(),
            "scope": "all" if owner_id is None else "user"}


class _SnapshotCollector:
    """Turns one metrics snapshot into Prometheus gauges (collected at scrape time)."""

    def __init__(self, snapshot: dict[str, Any]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        signals, positions = self.snapshot["signals"], self.snapshot["positions"]
        latency, context = self.snapshot["latency"], self.snapshot["context"]
        yield from _gauges("tradeloop_signals", "Stored signals by outcome", "outcome", {
            "accepted": signals["acceptedSignals"], "rejected": signals["rejectedSignals"],
            "queued": signals["queuedSignals"], "failed": signals["failedSignals"]})
        yield _gauge("tradeloop_signals_refused_at_intake",
                     "Webhook bodies refused before storage (invalid, replay, conflict)",
                     signals["refusedAtIntake"])
        yield _gauge("tradeloop_signal_acceptance_ratio",
                     "Accepted / decided signals (0-1)", signals["acceptanceRate"])
        for key, name, text in (
                ("openPositions", "positions_open", "Open paper positions"),
                ("totalExposure", "positions_exposure", "Sum of |quantity x entry price|"),
                ("unrealizedPnL", "positions_unrealized_pnl", "Unrealised P&L of open ones"),
                ("realizedPnL", "positions_realized_pnl", "Realised P&L of closed ones")):
            yield _gauge(f"tradeloop_{name}", text, positions[key])
        quantiles = GaugeMetricFamily(
            "tradeloop_latency_milliseconds",
            "Latency percentiles per stage over the newest METRICS_LATENCY_WINDOW rows",
            labels=["stage", "quantile"])
        samples = GaugeMetricFamily("tradeloop_latency_samples",
                                    "Rows behind each stage's percentiles", labels=["stage"])
        for stage in STAGES:
            block = latency[stage]
            samples.add_metric([stage], block["count"])
            for p in PERCENTILES:
                if block[f"p{p}"] is not None:
                    quantiles.add_metric([stage, str(p / 100)], block[f"p{p}"])
        yield quantiles
        yield samples
        if context["cacheHitRate"] is not None:
            yield _gauge("tradeloop_context_cache_hit_ratio",
                         "Context cache hits / decisions in the health window",
                         context["cacheHitRate"])
        yield _gauge("tradeloop_context_degraded_decisions",
                     "Decisions on a degraded context in the health window",
                     context["degradedDecisions"])


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _gauges(name: str, documentation: str, label: str,
            values: dict[str, float]) -> Iterable[GaugeMetricFamily]:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    yield family


def prometheus_text(snapshot: dict[str, Any]) -> bytes:
    """The snapshot in the Prometheus text format, through a registry of its own: nothing
    is registered globally, so processes, requests and tests never share state."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))  # type: ignore[arg-type]
    return generate_latest(registry)

