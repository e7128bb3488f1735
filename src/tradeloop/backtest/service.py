"""Backtests: submit (with the result cache), queue per user, execute, store, read, gate.

A run is identified by its cache key: a hash of everything that determines its result (the
normalised definition, params, symbols, timeframe, range, costs, fill model, engine version
and the fingerprint of every bar series used). Asking again for the same key answers with the
stored run at once; importing changed bars changes the fingerprint, hence the key.

Runs wait as `queued` and at most `MAX_CONCURRENT_BACKTESTS` per user are `running`; a run
either stores all of its results in one unit of work or none and ends `failed` with its error.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import json
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import structlog
from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from tradeloop.backtest.engine import BacktestOptions, SymbolBars, run_backtest
from tradeloop.backtest.metrics import METRICS, compute_metrics
from tradeloop.backtest.models import (
    BacktestResult,
    BacktestRun,
    BacktestRunSymbol,
    BacktestTrade,
    RunStatus,
)
from tradeloop.backtest.results import BacktestOutput
from tradeloop.db import Database, utcnow
from tradeloop.errors import AppError, ConflictError, FieldValidationError
from tradeloop.market_data import service as market_data
from tradeloop.market_data.service import BarArrays
from tradeloop.ownership import OwnedRepository
from tradeloop.schema_types import as_utc
from tradeloop.settings import Settings
from tradeloop.strategies import service as strategies
from tradeloop.strategies.compiler import CompiledStrategy
from tradeloop.strategies.models import Strategy, StrategyStatus
from tradeloop.tasks import enqueue

log = structlog.get_logger(__name__)

# Part of every cache key: bumped whenever the same request would compute other numbers,
# so results stored by an older engine are not served. 2: trades open at the end close at
# the last bar's open by default (end_fill), buy & hold starts after the warm-up, exposure
# counts the exit bar.
ENGINE_VERSION = "2"
Progress = Callable[[str], None]


class RunRepository(OwnedRepository[BacktestRun]):
    model = BacktestRun
    label = "Backtest run"


@dataclass(frozen=True)
class RunRequest:
    """What a user asks to backtest; empty symbols mean the definition's own."""

    strategy: str
    symbols: Sequence[str] = ()
    start: datetime | None = None
    end: datetime | None = None
    params: dict[str, Any] | None = None
    options: BacktestOptions = field(default_factory=BacktestOptions)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy (a sweep stores its base request for its chunk tasks)."""
        return {"strategy": self.strategy, "symbols": list(self.symbols),
                "start": self.start.isoformat() if self.start else None,
                "end": self.end.isoformat() if self.end else None,
                "params": self.params, "options": asdict(self.options)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRequest:
        return cls(strategy=data["strategy"], symbols=tuple(data["symbols"]),
                   start=datetime.fromisoformat(data["start"]) if data["start"] else None,
                   end=datetime.fromisoformat(data["end"]) if data["end"] else None,
                   params=data["params"], options=BacktestOptions(**data["options"]))


@dataclass(frozen=True)
class Submitted:
    run: BacktestRun
    cached: bool


@dataclass(frozen=True)
class Prepared:
    """A request resolved: the strategy version, compiled with its params, and its key."""

    strategy: Strategy
    compiled: CompiledStrategy
    symbols: list[str]
    key: str


def prepare(*, session: Session, owner_id: uuid.UUID, request: RunRequest) -> Prepared:
    """Resolve and check a request (unknown strategy 404, bad params 422, missing bars 422)."""
    strategy = strategies.find_by_name_or_id(session=session, owner_id=owner_id,
                                             name_or_id=request.strategy)
    compiled = strategies.compiled(strategy, request.params)
    symbols = _symbols_for(request, compiled)
    key = cache_key(owner_id, compiled, symbols, request,
                    market_data.series_fingerprints(session=session, symbols=symbols,
                                                    timeframe=compiled.definition.timeframe))
    return Prepared(strategy, compiled, symbols, key)


def submit_run(*, session: Session, owner_id: uuid.UUID, request: RunRequest,
               max_running: int, schedule: bool = True) -> Submitted:
    """The stored run for this exact request (cached), or a new queued one.

    `schedule=False` leaves starting the queue to the caller (sweeps start it once)."""
    prepared = prepare(session=session, owner_id=owner_id, request=request)
    existing = _find_by_key(session, prepared.key)
    if existing is not None:
        return _reuse(session, existing, max_running, schedule)
    run = _new_run(owner_id, prepared, request)
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()  # the run row first: its symbol rows reference it
            session.add_all(_symbol_rows(run, prepared.symbols))
    except IntegrityError:  # the same request committed by someone else a moment ago
        existing = _find_by_key(session, prepared.key)
        assert existing is not None
        return _reuse(session, existing, max_running, schedule)
    if schedule:
        start_queue(session=session, owner_id=owner_id, max_running=max_running)
    return Submitted(run, cached=False)


def start_queue(*, session: Session, owner_id: uuid.UUID, max_running: int,
                workers: int = 1) -> None:
    """After commit, start `workers` queue processors for the owner (each respects the limit)."""
    for _ in range(max(1, min(workers, max_running))):
        enqueue(session, "process_backtest_queue", str(owner_id), max_running)


def _symbols_for(request: RunRequest, compiled: CompiledStrategy) -> list[str]:
    chosen = request.symbols or compiled.definition.symbols
    return sorted({market_data.normalize_symbol(s) for s in chosen})


def cache_key(owner_id: uuid.UUID, compiled: CompiledStrategy, symbols: Sequence[str],
              request: RunRequest, fingerprints: dict[str, str]) -> str:
    """SHA-256 over everything that determines a result (see the module docstring)."""
    missing = [symbol for symbol, fingerprint in fingerprints.items() if not fingerprint]
    if missing:
        timeframe = compiled.definition.timeframe
        raise market_data.NoBarsError(
            f"No {timeframe} bars for {', '.join(missing)}; import them (`tradeloop data "
            f"import FILE --symbol SYMBOL --timeframe {timeframe}`) or choose other symbols",
            details={"missing": missing, "timeframe": timeframe})
    definition = compiled.definition
    payload = {
        "engine": ENGINE_VERSION, "owner": str(owner_id), "timeframe": definition.timeframe,
        # ast.dump ignores spacing and quoting, so a reformatted definition hits the cache.
        "indicators": {n: ast.dump(e.tree) for n, e in definition.indicators.items()},
        "entry": {s: ast.dump(e.tree) for s, e in definition.entry.items()},
        "exit": {s: ast.dump(e.tree) for s, e in definition.exit.items()},
        "risk": asdict(definition.risk), "params": compiled.params, "symbols": list(symbols),
        "start": request.start.isoformat() if request.start else None,
        "end": request.end.isoformat() if request.end else None,
        "options": asdict(request.options), "bars": fingerprints,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=float)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _find_by_key(session: Session, key: str) -> BacktestRun | None:
    return session.scalars(select(BacktestRun).where(BacktestRun.cache_key == key)).first()


def _reuse(session: Session, run: BacktestRun, max_running: int, schedule: bool) -> Submitted:
    if run.status == RunStatus.DONE:
        session.execute(update(BacktestRun).where(BacktestRun.id == run.id)
                        .values(cache_hits=BacktestRun.cache_hits + 1))
        return Submitted(run, cached=True)
    if run.status == RunStatus.FAILED:  # asking again retries a failed run
        run.status, run.error, run.finished_at = RunStatus.QUEUED.value, None, None
        session.flush()
        if schedule:
            start_queue(session=session, owner_id=run.user_id, max_running=max_running)
    return Submitted(run, cached=False)


def _new_run(owner_id: uuid.UUID, prepared: Prepared, request: RunRequest) -> BacktestRun:
    options, strategy, compiled = request.options, prepared.strategy, prepared.compiled
    symbols, key = prepared.symbols, prepared.key
    return BacktestRun(
        user_id=owner_id, strategy_id=strategy.id, strategy_name=strategy.name,
        strategy_version=strategy.version, definition=strategy.definition,
        symbols="," + ",".join(symbols) + ",", timeframe=compiled.definition.timeframe,
        start=request.start, end=request.end, params=compiled.params, cash=options.cash,
        commission=options.commission, commission_fixed=options.commission_fixed,
        slippage_bps=options.slippage_bps, fill=options.fill, size_units=options.size_units,
        end_fill=options.end_fill, status=RunStatus.QUEUED.value, cache_key=key, cache_hits=0,
        # Set here, not by the column default: the symbol rows copy it for their index.
        inserted_at=utcnow())


def _symbol_rows(run: BacktestRun, symbols: Sequence[str]) -> list[BacktestRunSymbol]:
    """The index rows that let `?symbol=` find the run without scanning `symbols`."""
    return [BacktestRunSymbol(run_id=run.id, symbol=symbol, user_id=run.user_id,
                              inserted_at=run.inserted_at) for symbol in symbols]


@dataclass(frozen=True)
class Lease:
    """How long a claimed run may stay `running` before it counts as abandoned (its worker
    was killed), and how many claims a run gets before it is failed instead of requeued."""

    duration: timedelta = timedelta(seconds=900)
    max_attempts: int = 3

    @classmethod
    def from_settings(cls, settings: Settings) -> Lease:
        return cls(timedelta(seconds=settings.backtest_lease_seconds),
                   settings.backtest_max_attempts)


class LeaseLostError(Exception):
    """The run was requeued (or failed) after its lease expired: another claim owns it now."""


def claim_next_run(*, session: Session, owner_id: uuid.UUID, max_running: int,
                   lease: Lease | None = None) -> BacktestRun | None:
    """Mark the owner's oldest queued run running, unless max_running already run.

    Running runs whose lease expired are released first, so a killed worker cannot hold one
    of the owner's slots forever."""
    lease = lease or Lease()
    # Locking the owner's active runs serialises concurrent claimers on PostgreSQL (SQLite
    # units of work are serialised already), so the limit holds under any interleaving.
    active = session.scalars(
        select(BacktestRun)
        .where(BacktestRun.user_id == owner_id,
               BacktestRun.status.in_([RunStatus.QUEUED.value, RunStatus.RUNNING.value]))
        .order_by(BacktestRun.inserted_at, BacktestRun.id).with_for_update()).all()
    now = utcnow()
    for run in active:
        _release_if_expired(run, now, lease)
    running = sum(run.status == RunStatus.RUNNING for run in active)
    queued = [run for run in active if run.status == RunStatus.QUEUED]
    if running >= max_running or not queued:
        session.flush()
        return None
    run = queued[0]
    run.status, run.started_at = RunStatus.RUNNING.value, now
    run.attempts += 1
    session.flush()
    return run


def release_expired_claims(*, session: Session, lease: Lease) -> set[uuid.UUID]:
    """Requeue (or fail, after lease.max_attempts claims) every running run whose claim is
    older than the lease; returns the owners that have requeued runs to process."""
    now = utcnow()
    stale = session.scalars(
        select(BacktestRun)
        .where(BacktestRun.status == RunStatus.RUNNING.value,
               BacktestRun.started_at < now - lease.duration)
        .order_by(BacktestRun.started_at).with_for_update()).all()
    owners = set()
    for run in stale:
        if _release_if_expired(run, now, lease) == RunStatus.QUEUED:
            owners.add(run.user_id)
    session.flush()
    return owners


def _release_if_expired(run: BacktestRun, now: datetime, lease: Lease) -> RunStatus | None:
    """Give an abandoned run back to the queue, or fail it when it used up its attempts."""
    if run.status != RunStatus.RUNNING or run.started_at is None:
        return None
    if run.started_at >= now - lease.duration:
        return None
    seconds = int(lease.duration.total_seconds())
    if run.attempts >= lease.max_attempts:
        run.status, run.finished_at = RunStatus.FAILED.value, now
        run.error = (f"abandoned: no worker finished it within the {seconds} s lease, "
                     f"{run.attempts} times (the worker was probably killed); ask again to "
                     "retry")
        log.warning("backtest_lease_expired_failed", run_id=str(run.id), attempts=run.attempts)
        return RunStatus.FAILED
    run.status, run.started_at = RunStatus.QUEUED.value, None
    log.warning("backtest_lease_expired_requeued", run_id=str(run.id), attempts=run.attempts)
    return RunStatus.QUEUED


def process_queue(*, db: Database, owner_id: uuid.UUID, max_running: int,
                  lease: Lease | None = None) -> int:
    """Run the owner's queued backtests while a slot is free; returns how many ran."""
    ran = 0
    while True:
        with db.unit_of_work() as session:
            run = claim_next_run(session=session, owner_id=owner_id, max_running=max_running,
                                 lease=lease)
            claimed = (run.id, run.attempts) if run else None
        if claimed is None:
            return ran
        execute_run(db=db, run_id=claimed[0], attempt=claimed[1])
        ran += 1


def execute_run(*, db: Database, run_id: uuid.UUID, progress: Progress | None = None,
                attempt: int | None = None) -> None:
    """Compute and store one run; on any error store nothing but the failure.

    `attempt` is the claim being executed (process_queue's); when the run was released and
    claimed again meanwhile, this execution stores nothing (the newer claim will)."""
    started = time.perf_counter()
    try:
        with db.unit_of_work() as session:
            run = session.get(BacktestRun, run_id)
            if run is None:  # deleted while queued
                return
            output = compute_output(session=session, run=run, progress=progress)
            store_output(session=session, run=run, output=output)
            _finish(session, run, RunStatus.DONE, started, attempt)
    except LeaseLostError:
        log.warning("backtest_lease_lost", run_id=str(run_id), attempt=attempt)
    except Exception as exc:
        log.exception("backtest_failed", run_id=str(run_id))
        with contextlib.suppress(LeaseLostError), db.unit_of_work() as session:
            run = session.get(BacktestRun, run_id)
            if run is not None:
                _finish(session, run, RunStatus.FAILED, started, attempt,
                        error=_describe_failure(exc))


def _finish(session: Session, run: BacktestRun, status: RunStatus, started: float,
            attempt: int | None, error: str | None = None) -> None:
    """Record the outcome; with `attempt`, only while that claim still owns the run (one
    conditional UPDATE, so a sweeper's requeue in between cannot be overwritten)."""
    values = {"status": status.value, "finished_at": utcnow(), "error": error,
              "duration_ms": round((time.perf_counter() - started) * 1000, 2)}
    query = update(BacktestRun).where(BacktestRun.id == run.id)
    if attempt is not None:
        query = query.where(BacktestRun.status == RunStatus.RUNNING.value,
                            BacktestRun.attempts == attempt)
    if session.execute(query.values(**values).execution_options(
            synchronize_session=False)).rowcount != 1:
        raise LeaseLostError(str(run.id))
    session.refresh(run)


def _describe_failure(exc: Exception) -> str:
    if isinstance(exc, AppError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"[:2000]


def compute_output(*, session: Session, run: BacktestRun,
                   progress: Progress | None = None) -> BacktestOutput:
    """Evaluate the run's definition on its bars and simulate it."""
    bars = load_symbol_bars(session=session, symbols=run.symbol_list, timeframe=run.timeframe,
                            start=run.start, end=run.end, progress=progress)
    options = BacktestOptions(cash=run.cash, commission=run.commission,
                              commission_fixed=run.commission_fixed,
                              slippage_bps=run.slippage_bps, fill=run.fill,  # type: ignore[arg-type]
                              size_units=run.size_units,  # type: ignore[arg-type]
                              end_fill=run.end_fill)  # type: ignore[arg-type]
    return simulate(strategies.compile_definition(run.definition, run.params), bars, options)


def load_symbol_bars(*, session: Session, symbols: Sequence[str], timeframe: str,
                     start: datetime | None, end: datetime | None,
                     progress: Progress | None = None) -> list[tuple[str, BarArrays]]:
    """Every symbol's bars in the range, loaded once (a sweep simulates many params on them)."""
    loaded = []
    for symbol in symbols:
        if progress:
            progress(symbol)
        loaded.append((symbol, market_data.load_bars(session=session, symbol=symbol,
                                                     timeframe=timeframe, start=start, end=end)))
    return loaded


def simulate(compiled: CompiledStrategy, bars: Sequence[tuple[str, BarArrays]],
             options: BacktestOptions) -> BacktestOutput:
    """Signals and the engine: the one path of single runs and sweeps alike (same numbers)."""
    inputs = [(SymbolBars(symbol=symbol, ts=b.ts, open=b.open, high=b.high, low=b.low,
                          close=b.close), compiled.evaluate(b.as_mapping()))
              for symbol, b in bars]
    return run_backtest(inputs, compiled.risk, options)


def store_output(*, session: Session, run: BacktestRun, output: BacktestOutput) -> None:
    """Metrics as typed columns, the equity curve compressed, every trade as a row."""
    grouped = compute_metrics(output)
    flat = {name: value for values in grouped.values() for name, value in values.items()}
    session.add(BacktestResult(
        run_id=run.id, equity_ts=_pack(output.ts.astype("datetime64[ns]").astype(np.int64)),
        equity_values=_pack(output.equity.astype(np.float64)), **flat))
    trades = output.trades
    if len(trades):
        session.execute(insert(BacktestTrade), [
            {"id": uuid.uuid4(), "run_id": run.id, "seq": i, "symbol": str(trades.symbol[i]),
             "direction": int(trades.direction[i]), "size": float(trades.size[i]),
             "entry_bar": int(trades.entry_index[i]), "exit_bar": int(trades.exit_index[i]),
             "entry_time": market_data.utc_datetime(trades.entry_time[i]),
             "exit_time": market_data.utc_datetime(trades.exit_time[i]),
             "entry_price": float(trades.entry_price[i]),
             "exit_price": float(trades.exit_price[i]),
             "commission": float(trades.commission[i]), "pnl": float(trades.pnl[i]),
             "return_pct": float(trades.return_pct[i]) * 100,
             "exit_reason": str(trades.exit_reason[i])}
            for i in range(len(trades))])
    session.flush()


def _pack(values: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(values).tobytes(), level=1)


def equity_curve(result: Any, points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The stored equity curve (ts as datetime64[ns]); `points` thins it evenly for charts."""
    ts = np.frombuffer(zlib.decompress(result.equity_ts), dtype=np.int64).astype("datetime64[ns]")
    equity = np.frombuffer(zlib.decompress(result.equity_values), dtype=np.float64)
    if points and len(ts) > points:
        keep = np.unique(np.linspace(0, len(ts) - 1, points).round().astype(np.int64))
        ts, equity = ts[keep], equity[keep]
    return ts, equity


def grouped_metrics(result: Any | None) -> dict[str, dict[str, Any]]:
    """A result row's metrics as {category: {name: value}} (empty before it is done)."""
    if result is None:
        return {}
    grouped: dict[str, dict[str, Any]] = {}
    for spec in METRICS:
        grouped.setdefault(spec.category, {})[spec.name] = getattr(result, spec.name)
    return grouped


def get_run(*, session: Session, owner_id: uuid.UUID, run_id: uuid.UUID) -> BacktestRun:
    return RunRepository(session, owner_id).get(run_id)


def get_result(*, session: Session, run: BacktestRun) -> Any | None:
    return session.get(BacktestResult, run.id)


SUMMARY_METRICS = ("return_pct", "sharpe_ratio", "max_drawdown_pct", "num_trades")


@dataclass(frozen=True)
class Cursor:
    """Keyset position in a newest-first listing: rows strictly older than this one.

    Opaque to clients (URL-safe base64 of `inserted_at|id`): a deep page costs what the first
    page costs, where an offset makes the database step over every earlier row."""

    inserted_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.inserted_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            stamp, _, row_id = raw.partition("|")
            return cls(as_utc(datetime.fromisoformat(stamp)), uuid.UUID(row_id))
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise FieldValidationError([{
                "field": "before", "type": "value_error",
                "message": "not a cursor from this API; pass the next_cursor of a previous "
                           "page"}]) from None


@dataclass(frozen=True)
class RunPage:
    rows: list[tuple[BacktestRun, dict[str, Any]]]
    next_cursor: str | None   # None on the last page


def list_runs(*, session: Session, owner_id: uuid.UUID, limit: int, offset: int = 0,
              before: Cursor | None = None, strategy_id: uuid.UUID | None = None,
              symbol: str | None = None, status: str | None = None) -> RunPage:
    """The owner's runs, newest first, each with a few headline metrics.

    `before` (keyset) and `offset` both page; the cursor of the last row comes back either
    way. With `symbol` the rows come from backtest_run_symbols' (user, symbol, time) index."""
    columns = [getattr(BacktestResult, name) for name in SUMMARY_METRICS]
    query = (RunRepository(session, owner_id).select()
             # The definition text is the widest column and a listing never shows it.
             .options(defer(BacktestRun.definition))
             .add_columns(*columns)
             .outerjoin(BacktestResult, BacktestResult.run_id == BacktestRun.id))
    newest: tuple[Any, Any] = (BacktestRun.inserted_at, BacktestRun.id)
    if symbol:
        query = query.join(BacktestRunSymbol, BacktestRunSymbol.run_id == BacktestRun.id).where(
            BacktestRunSymbol.user_id == owner_id,
            BacktestRunSymbol.symbol == market_data.normalize_symbol(symbol))
        newest = (BacktestRunSymbol.inserted_at, BacktestRunSymbol.run_id)
    if before is not None:
        # (t, id) < (cursor t, cursor id), spelled so both databases range-scan the index.
        query = query.where(newest[0] <= before.inserted_at,
                            or_(newest[0] < before.inserted_at, newest[1] < before.id))
    if strategy_id:
        query = query.where(BacktestRun.strategy_id == strategy_id)
    if status:
        query = query.where(BacktestRun.status == status)
    query = query.order_by(newest[0].desc(), newest[1].desc()).limit(limit).offset(offset)
    rows = [(row[0], dict(zip(SUMMARY_METRICS, row[1:], strict=True)))
            for row in session.execute(query)]
    last = rows[-1][0] if len(rows) == limit else None
    return RunPage(rows, Cursor(last.inserted_at, last.id).encode() if last else None)


def list_trades(*, session: Session, run: BacktestRun, limit: int,
                offset: int) -> tuple[list[BacktestTrade], int]:
    query = select(BacktestTrade).where(BacktestTrade.run_id == run.id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(BacktestTrade.seq).limit(limit).offset(offset)).all()
    return list(rows), int(total)


def delete_run(*, session: Session, owner_id: uuid.UUID, run_id: uuid.UUID) -> None:
    RunRepository(session, owner_id).delete(run_id)


def cache_stats(*, session: Session, owner_id: uuid.UUID | None) -> dict[str, Any]:
    """Runs by status and the cache hit rate (hits / (hits + computed runs)) of one owner's
    runs, or of every user's (`owner_id` None)."""
    owned = [] if owner_id is None else [BacktestRun.user_id == owner_id]
    by_status = dict(session.execute(
        select(BacktestRun.status, func.count()).where(*owned)
        .group_by(BacktestRun.status)).all())
    hits = int(session.scalar(select(func.coalesce(func.sum(BacktestRun.cache_hits), 0))
                              .where(*owned)) or 0)
    misses = int(sum(by_status.values()))
    total = hits + misses
    return {"runs": {status.value: int(by_status.get(status.value, 0)) for status in RunStatus},
            "cache": {"hits": hits, "misses": misses,
                      "hit_rate": round(hits / total, 4) if total else None}}


def activate_strategy(*, session: Session, owner_id: uuid.UUID,
                      strategy_id: uuid.UUID) -> Strategy:
    """Activate a strategy version, only if a backtest of exactly this version finished."""
    strategy = strategies.get_strategy(session=session, owner_id=owner_id,
                                       strategy_id=strategy_id)
    tested = session.scalar(select(func.count()).select_from(BacktestRun).where(
        BacktestRun.user_id == owner_id, BacktestRun.strategy_id == strategy.id,
        BacktestRun.definition == strategy.definition,
        BacktestRun.status == RunStatus.DONE.value))
    if not tested:
        raise ConflictError(
            f"'{strategy.name}' version {strategy.version} has no finished backtest of this "
            "exact definition; run one (POST /api/v1/backtest/run or `tradeloop backtest run "
            f"--strategy {strategy.id}`) and activate again",
            code="backtest_required", details={"strategy_id": str(strategy.id),
                                               "version": strategy.version})
    if strategy.status == StrategyStatus.ARCHIVED:
        raise ConflictError("An archived version cannot be activated; create a new version",
                            code="archived")
    return strategies.set_status(session=session, strategy=strategy,
                                 status=StrategyStatus.ACTIVE)
