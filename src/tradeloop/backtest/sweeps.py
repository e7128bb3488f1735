"""Parameter sweeps: a grid of params fanned out as ordinary (cached) runs, then ranked."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tradeloop.backtest.metrics import METRICS
from tradeloop.backtest.models import BacktestResult, BacktestRun, BacktestSweep
from tradeloop.backtest.service import RunRequest, start_queue, submit_run
from tradeloop.errors import FieldValidationError
from tradeloop.ownership import OwnedRepository

MAX_SWEEP_RUNS = 2_000
METRIC_NAMES = frozenset(spec.name for spec in METRICS if spec.kind != "datetime")


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
        if step <= 0 or stop < start:
            raise _grid_error(name, "needs start <= stop and a positive step")
        count = int((stop - start) / step + 1e-9) + 1
        values = [start + i * step for i in range(count)]
    if not values:
        raise _grid_error(name, "has no values")
    return [int(v) if float(v).is_integer() else v for v in values]


def _grid_error(name: str, message: str) -> FieldValidationError:
    return FieldValidationError([{"field": f"grid.{name}", "message": message,
                                  "type": "value_error"}])


def grid_combinations(grid: dict[str, str | list[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's values, as params dicts."""
    axes = {name: parse_grid_values(name, spec) for name, spec in grid.items()}
    total = 1
    for values in axes.values():
        total *= len(values)
    if total > MAX_SWEEP_RUNS:
        raise FieldValidationError([{"field": "grid", "type": "value_error",
                                     "message": f"{total} combinations; at most "
                                     f"{MAX_SWEEP_RUNS} per sweep"}])
    names = list(axes)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes.values())]


def create_sweep(*, session: Session, owner_id: uuid.UUID, base: RunRequest,
                 grid: dict[str, str | list[float]], metric: str, max_running: int,
                 workers: int = 4) -> tuple[BacktestSweep, int]:
    """Submit one run per grid point (cached ones answer at once); returns (sweep, cached)."""
    check_metric(metric)
    runs = [submit_run(session=session, owner_id=owner_id, schedule=False,
                       request=replace(base, params={**(base.params or {}), **params}),
                       max_running=max_running) for params in grid_combinations(grid)]
    start_queue(session=session, owner_id=owner_id, max_running=max_running, workers=workers)
    sweep = SweepRepository(session, owner_id).add(BacktestSweep(
        strategy_id=runs[0].run.strategy_id, metric=metric, grid=grid,
        run_ids=[str(s.run.id) for s in runs]))
    return sweep, sum(s.cached for s in runs)


def check_metric(metric: str) -> None:
    if metric not in METRIC_NAMES:
        raise FieldValidationError([{"field": "metric", "type": "value_error",
                                     "message": f"unknown metric '{metric}'; see docs/metrics.md"}])


def sweep_report(*, session: Session, owner_id: uuid.UUID, sweep_id: uuid.UUID,
                 metric: str | None = None, descending: bool = True) -> dict[str, Any]:
    """Progress of a sweep and its finished runs ranked by the metric (best first)."""
    sweep = SweepRepository(session, owner_id).get(sweep_id)
    metric = metric or sweep.metric
    check_metric(metric)
    ids = [uuid.UUID(i) for i in sweep.run_ids]
    rows = session.execute(
        select(BacktestRun, getattr(BacktestResult, metric))
        .outerjoin(BacktestResult, BacktestResult.run_id == BacktestRun.id)
        .where(BacktestRun.id.in_(ids), BacktestRun.user_id == owner_id)).all()
    counts = Counter(run.status for run, _ in rows)
    ranked = sorted(((run, value) for run, value in rows if value is not None),
                    key=lambda pair: pair[1], reverse=descending)
    return {"id": sweep.id, "metric": metric, "total": len(ids), "status": dict(counts),
            "finished": counts.get("done", 0) + counts.get("failed", 0) == len(ids),
            "ranking": [{"run_id": run.id, "params": run.params, "value": value,
                         "status": run.status} for run, value in ranked]}
