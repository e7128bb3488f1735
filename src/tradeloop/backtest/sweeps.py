"""Parameter sweeps: rank every combination of a grid by one metric, run the best in full.

For a metric with a batch formula (ranking.RANKABLE: returns, volatility, Sharpe, Sortino,
Calmar, drawdown, every trade metric) the grid is split into chunks fanned out as
`rank_sweep_chunk` tasks (the in-process pool, or Celery workers). A chunk loads the bars
once, simulates each of its combinations through service.simulate (the single-run path), and
computes the metric for all of them at once (ranking.rank_values), which equals each single
run's compute_metrics value. The chunk that completes the grid submits the `top` best
combinations as ordinary cached runs, so those get every metric, trades and equity stored.

Any other metric (calendar months, benchmark, tails, …) needs compute_metrics per
combination: then every combination is submitted as a full run, as before.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tradeloop.backtest import service
from tradeloop.backtest.metrics.catalogue import METRICS
from tradeloop.backtest.metrics.ranking import RANKABLE, rank_values
from tradeloop.backtest.models import (
    BacktestResult,
    BacktestRun,
    BacktestSweep,
    BacktestSweepPoint,
    SweepMethod,
)
from tradeloop.backtest.service import RunRequest, start_queue, submit_run
from tradeloop.db import Database, utcnow
from tradeloop.errors import AppError, FieldValidationError
from tradeloop.ownership import OwnedRepository
from tradeloop.strategies import service as strategies
from tradeloop.strategies.compiler import compile_strategy
from tradeloop.strategies.definition import parse_definition
from tradeloop.tasks import enqueue

log = structlog.get_logger(__name__)

MAX_SWEEP_RUNS = 2_000
DEFAULT_TOP = 10
METRIC_NAMES = frozenset(spec.name for spec in METRICS if spec.kind != "datetime")
# Combinations simulated before their metric is computed and their curves dropped: bounds a
# chunk's memory (a 1M-bar curve is 8 MB) whatever the chunk's size.
_BATCH = 64


class SweepRepository(OwnedRepository[BacktestSweep]):
    model = BacktestSweep
    label = "Sweep"


def parse_grid_values(name: str, spec: str | list[float]) -> list[float]:
    """`[5, 10]` as given, or `start:stop:step` inclusive of stop (e.g. `5:50:5`)."""
    if isinstance(spec, list):
        values = [float(v) for v in spec]
    else:
        parts = spec.split(":")
        try:
            start, stop, step = (float(p) for p in (parts if len(parts) == 3 else [*parts, 1]))
        except ValueError:
            raise _grid_error(name, f"'{spec}' is not start:stop:step") from None
        if not all(math.isfinite(v) for v in (start, stop, step)):
            raise _grid_error(name, "start, stop and step must be finite numbers")
        if step <= 0 or stop < start:
            raise _grid_error(name, "needs start <= stop and a positive step")
        steps = (stop - start) / step  # counted before any list is built ("1:1e9:1")
        if not steps < MAX_SWEEP_RUNS:
            raise _grid_error(name, f"has more than {MAX_SWEEP_RUNS} values")
        count = int(steps + 1e-9) + 1
        values = [start + i * step for i in range(count)]
    if not values:
        raise _grid_error(name, "has no values")
    return [int(v) if float(v).is_integer() else v for v in values]


def _grid_error(name: str, message: str) -> FieldValidationError:
    return FieldValidationError([{"field": f"grid.{name}", "message": message,
                                  "type": "value_error"}])


def grid_combinations(grid: dict[str, str | list[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's values, as params dicts (always in the same order)."""
    axes = {name: parse_grid_values(name, spec) for name, spec in grid.items()}
    total = math.prod(len(values) for values in axes.values())
    if total > MAX_SWEEP_RUNS:
        raise FieldValidationError([{"field": "grid", "type": "value_error",
                                     "message": f"{total} combinations; at most "
                                     f"{MAX_SWEEP_RUNS} per sweep"}])
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def check_metric(metric: str) -> None:
    if metric not in METRIC_NAMES:
        raise FieldValidationError([{"field": "metric", "type": "value_error",
                                     "message": f"unknown metric '{metric}'; see docs/metrics.md"}])


def _with(base: RunRequest, params: dict[str, float]) -> RunRequest:
    return replace(base, params={**(base.params or {}), **params})


# ---------------------------------------------------------------- create


def create_sweep(*, session: Session, owner_id: uuid.UUID, base: RunRequest,
                 grid: dict[str, str | list[float]], metric: str, max_running: int,
                 workers: int = 4, top: int = DEFAULT_TOP,
                 descending: bool = True) -> tuple[BacktestSweep, int]:
    """Start a sweep; returns (sweep, runs answered from the cache so far).

    `top`: how many of the best combinations get a full run (vectorised sweeps);
    `descending`: whether higher values are better (which ones are the best)."""
    check_metric(metric)
    combinations = grid_combinations(grid)
    # Checks the strategy, the params of both ends of the grid and the bars now (404 / 422)
    # rather than in a background task.
    first = service.prepare(session=session, owner_id=owner_id,
                            request=_with(base, combinations[0]))
    service.prepare(session=session, owner_id=owner_id, request=_with(base, combinations[-1]))
    # Pinned to this strategy version, whatever is saved under its name meanwhile.
    base = replace(base, strategy=str(first.strategy.id))
    sweep = SweepRepository(session, owner_id).add(BacktestSweep(
        strategy_id=first.strategy.id, metric=metric, grid=grid, run_ids=[],
        request=base.to_json(), total=len(combinations), descending=descending,
        method=(SweepMethod.VECTORISED if metric in RANKABLE else SweepMethod.RUNS).value,
        top=min(top, len(combinations)) if metric in RANKABLE else len(combinations)))
    if sweep.method == SweepMethod.RUNS:
        _run_in_full(session, sweep, base, list(enumerate(combinations)), max_running, workers)
        return sweep, sweep.cached
    size = math.ceil(len(combinations) / max(1, min(workers, len(combinations))))
    for first_seq in range(0, len(combinations), size):
        enqueue(session, "rank_sweep_chunk", str(sweep.id), first_seq,
                min(first_seq + size, len(combinations)))
    return sweep, 0


def _run_in_full(session: Session, sweep: BacktestSweep, base: RunRequest,
                 chosen: Sequence[tuple[int, dict[str, float]]], max_running: int,
                 workers: int) -> None:
    """Submit the chosen (seq, params) as ordinary cached runs and mark the sweep ranked."""
    points = {point.seq: point for point in session.scalars(
        select(BacktestSweepPoint).where(BacktestSweepPoint.sweep_id == sweep.id))}
    run_ids = []
    for seq, params in chosen:
        submitted = submit_run(session=session, owner_id=sweep.user_id, schedule=False,
                               request=_with(base, params), max_running=max_running)
        sweep.cached += submitted.cached
        run_ids.append(str(submitted.run.id))
        point = points.get(seq)
        if point is None:
            session.add(BacktestSweepPoint(sweep_id=sweep.id, seq=seq, params=params,
                                           run_id=submitted.run.id))
        else:
            point.run_id = submitted.run.id
    sweep.run_ids, sweep.ranked_at = run_ids, utcnow()
    session.flush()
    start_queue(session=session, owner_id=sweep.user_id, max_running=max_running,
                workers=workers)


# ---------------------------------------------------------------- chunks (tasks)


@dataclass(frozen=True)
class _ChunkInput:
    combinations: list[tuple[int, dict[str, float]]]   # (seq, params) not ranked yet
    definition: str
    metric: str
    request: RunRequest
    bars: list[tuple[str, Any]]


def rank_chunk(*, db: Database, sweep_id: uuid.UUID, first: int, stop: int,
               max_running: int, workers: int) -> int:
    """Rank combinations [first, stop) of a sweep; the chunk that completes the grid submits
    the top ones as full runs. Returns how many combinations it ranked."""
    try:
        with db.unit_of_work() as session:
            chunk = _load_chunk(session, sweep_id, first, stop)
        if chunk is None:
            return 0
        values = _chunk_values(chunk)
    except Exception as exc:  # e.g. the bars were deleted since the sweep was accepted
        # Recorded, so the sweep ends with its error instead of waiting forever.
        _record_error(db, sweep_id, exc.message if isinstance(exc, AppError)
                      else f"{type(exc).__name__}: {exc}"[:2000])
        return 0
    with db.unit_of_work() as session:
        # Locking the sweep serialises the chunks' commits, so exactly one sees the grid
        # complete (SQLite units of work are serialised already).
        sweep = session.scalars(select(BacktestSweep).where(BacktestSweep.id == sweep_id)
                                .with_for_update()).first()
        if sweep is None:
            return 0
        done = set(session.scalars(select(BacktestSweepPoint.seq).where(
            BacktestSweepPoint.sweep_id == sweep_id,
            BacktestSweepPoint.seq.in_([seq for seq, _ in chunk.combinations]))))
        session.add_all(BacktestSweepPoint(sweep_id=sweep_id, seq=seq, params=params,
                                           value=value)
                        for (seq, params), value in zip(chunk.combinations, values, strict=True)
                        if seq not in done)  # a redelivered task adds nothing twice
        session.flush()
        ranked = session.scalar(select(func.count()).select_from(BacktestSweepPoint).where(
            BacktestSweepPoint.sweep_id == sweep_id)) or 0
        if ranked == sweep.total and sweep.ranked_at is None:
            _run_in_full(session, sweep, chunk.request, _best(session, sweep), max_running,
                         workers)
    return len(chunk.combinations)


def _load_chunk(session: Session, sweep_id: uuid.UUID, first: int,
                stop: int) -> _ChunkInput | None:
    sweep = session.get(BacktestSweep, sweep_id)
    if sweep is None or sweep.ranked_at is not None or sweep.request is None:
        return None
    request = RunRequest.from_json(sweep.request)
    strategy = strategies.get_strategy(session=session, owner_id=sweep.user_id,
                                       strategy_id=sweep.strategy_id)
    prepared = service.prepare(session=session, owner_id=sweep.user_id, request=request)
    bars = service.load_symbol_bars(
        session=session, symbols=prepared.symbols, timeframe=prepared.compiled.definition
        .timeframe, start=request.start, end=request.end)
    combinations = list(enumerate(grid_combinations(sweep.grid)))[first:stop]
    return _ChunkInput(combinations, strategy.definition, sweep.metric, request, bars)


def _chunk_values(chunk: _ChunkInput) -> list[float | None]:
    """The metric of every combination of the chunk, _BATCH simulations at a time."""
    definition = parse_definition(chunk.definition)   # parsed once, compiled per params
    values: list[float | None] = []
    for offset in range(0, len(chunk.combinations), _BATCH):
        outputs = [service.simulate(
            compile_strategy(definition, {**(chunk.request.params or {}), **params}),
            chunk.bars, chunk.request.options)
            for _, params in chunk.combinations[offset:offset + _BATCH]]
        values += rank_values(outputs, chunk.metric)
    return values


def _best(session: Session, sweep: BacktestSweep) -> list[tuple[int, dict[str, float]]]:
    """The sweep's `top` combinations by value (undefined values last, grid order on ties)."""
    points = session.scalars(select(BacktestSweepPoint).where(
        BacktestSweepPoint.sweep_id == sweep.id)).all()
    sign = -1 if sweep.descending else 1
    ordered = sorted(points, key=lambda p: (p.value is None, sign * (p.value or 0.0), p.seq))
    return [(point.seq, point.params) for point in ordered[:sweep.top]]


def _record_error(db: Database, sweep_id: uuid.UUID, message: str) -> None:
    log.exception("sweep_chunk_failed", sweep_id=str(sweep_id), error=message)
    with db.unit_of_work() as session:
        sweep = session.get(BacktestSweep, sweep_id)
        if sweep is not None and sweep.error is None:
            sweep.error = message


# ---------------------------------------------------------------- report


def sweep_report(*, session: Session, owner_id: uuid.UUID, sweep_id: uuid.UUID,
                 metric: str | None = None, descending: bool | None = None) -> dict[str, Any]:
    """Progress of a sweep and its combinations ranked by the metric (best first).

    The sweep's own metric of a vectorised sweep ranks every combination; another metric
    ranks the combinations that have a finished full run (from their stored results)."""
    sweep = SweepRepository(session, owner_id).get(sweep_id)
    metric = metric or sweep.metric
    check_metric(metric)
    descending = sweep.descending if descending is None else descending
    rows = session.execute(
        select(BacktestSweepPoint, BacktestRun.status, getattr(BacktestResult, metric))
        .outerjoin(BacktestRun, BacktestRun.id == BacktestSweepPoint.run_id)
        .outerjoin(BacktestResult, BacktestResult.run_id == BacktestRun.id)
        .where(BacktestSweepPoint.sweep_id == sweep.id)).all()
    batch_values = sweep.method == SweepMethod.VECTORISED and metric == sweep.metric
    counts = Counter(status for _, status, _ in rows if status is not None)
    finished_runs = counts.get("done", 0) + counts.get("failed", 0)
    ranked = len(rows) if sweep.method == SweepMethod.VECTORISED else finished_runs
    entries = [(point, status, point.value if batch_values else stored)
               for point, status, stored in rows]
    ranking = sorted(((p, s, v) for p, s, v in entries if v is not None),
                     key=lambda e: (e[2], -e[0].seq), reverse=descending)
    runs = len(sweep.run_ids) if sweep.ranked_at else sweep.top
    return {
        "id": sweep.id, "metric": metric, "method": sweep.method, "total": sweep.total,
        "ranked": ranked, "top": sweep.top, "runs": runs, "cached": sweep.cached,
        "status": dict(counts), "error": sweep.error,
        "finished": sweep.error is not None or (
            sweep.ranked_at is not None and finished_runs == len(sweep.run_ids)),
        "progress": {"completed": finished_runs + (
            ranked if sweep.method == SweepMethod.VECTORISED else 0),
            "total": runs + (sweep.total if sweep.method == SweepMethod.VECTORISED else 0)},
        "ranking": [{"run_id": point.run_id, "params": point.params, "value": value,
                     "status": status or "ranked"} for point, status, value in ranking],
    }
