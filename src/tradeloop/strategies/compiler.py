"""From a checked definition (and optional param overrides) to per-bar signal arrays.

The same compiled strategy drives backtests and live evaluation: give it one symbol's bars
as arrays (oldest first) and it yields four boolean arrays — entry_long, exit_long,
entry_short, exit_short — computed at each bar's close from that bar and earlier ones only,
and the indicators' warm-up (where a backtest's buy & hold starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from tradeloop.strategies.definition import (
    DefinitionError,
    RiskSettings,
    StrategyDefinition,
    StrategyDefinitionError,
    iter_expressions,
)
from tradeloop.strategies.expressions import (
    SERIES_NAMES,
    Evaluator,
    ExpressionError,
    Kind,
    Scope,
    infer_kind,
    number_problem,
)

SIGNAL_NAMES = ("entry_long", "exit_long", "entry_short", "exit_short")


@dataclass(frozen=True)
class StrategySignals:
    """Boolean arrays, one entry per bar; True where the rule fires at that bar's close.

    warmup is the first bar at which every named indicator has a value (backtesting.py's
    ``_indicator_warmup_nbars``); an indicator that never has one, or is never missing (a
    condition, a number), sets no warm-up."""

    entry_long: np.ndarray
    exit_long: np.ndarray
    entry_short: np.ndarray
    exit_short: np.ndarray
    warmup: int = 0

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name).sum()) for name in SIGNAL_NAMES}


@dataclass(frozen=True)
class CompiledStrategy:
    """A definition bound to concrete params, ready to evaluate on any symbol's bars."""

    definition: StrategyDefinition
    params: dict[str, int | float]

    @property
    def risk(self) -> RiskSettings:
        return self.definition.risk

    def evaluate(self, bars: Mapping[str, np.ndarray]) -> StrategySignals:
        """Signals for one symbol; `bars` maps open/high/low/close/volume to float arrays."""
        arrays = {name: np.asarray(bars[name], dtype=np.float64) for name in SERIES_NAMES}
        evaluator = Evaluator(arrays, self.params,
                              {n: e.tree for n, e in self.definition.indicators.items()})
        length = len(arrays["close"])
        never = np.zeros(length, dtype=bool)
        rules = {f"entry_{side}": rule for side, rule in self.definition.entry.items()}
        rules |= {f"exit_{side}": rule for side, rule in self.definition.exit.items()}
        values = {name: evaluator.series(rules[name].tree).astype(bool, copy=False)
                  if name in rules else never for name in SIGNAL_NAMES}
        # Every named indicator counts, used by a rule or not, like backtesting.py's self.I.
        warmup = max((first_value(evaluator.indicator(name))
                      for name in self.definition.indicators), default=0)
        return StrategySignals(**values, warmup=warmup)


_FIRST_WINDOW = 64  # bars searched for an indicator's first value before widening the window


def first_value(values: object) -> int:
    """Index of the first value (not NaN) of a float series; 0 for anything else, or when it
    has no value at all (backtesting.py's ``isnan(values).argmin()``). Searches windows that
    grow fourfold: a warm-up is short and the series may have a million bars."""
    if not isinstance(values, np.ndarray) or values.dtype.kind != "f":
        return 0
    start, size, n = 0, _FIRST_WINDOW, len(values)
    while start < n:
        missing = np.isnan(values[start:start + size])
        at = missing.argmin()
        if not missing[at]:
            return start + int(at)
        start, size = start + size, size * 4
    return 0


def compile_strategy(definition: StrategyDefinition,
                     params: Mapping[str, object] | None = None) -> CompiledStrategy:
    """Bind param overrides (e.g. from a sweep); errors name each bad param."""
    effective = dict(definition.params)
    errors: list[DefinitionError] = []
    for name, value in (params or {}).items():
        if name not in definition.params:
            known = ", ".join(definition.params) or "none"
            errors.append(DefinitionError(0, 0, f"unknown param '{name}'; known: {known}"))
        elif problem := number_problem(value):
            errors.append(DefinitionError(0, 0, f"param '{name}' {problem}"))
        else:
            effective[name] = value
    if not errors and params:
        errors = _recheck_with(definition, effective)
    if errors:
        raise StrategyDefinitionError(errors)
    return CompiledStrategy(definition, effective)


def _recheck_with(definition: StrategyDefinition,
                  params: dict[str, int | float]) -> list[DefinitionError]:
    # Periods depend on params: sma(close, fast) with fast=0 must be refused up front.
    kinds: dict[str, Kind] = {}
    errors: list[DefinitionError] = []
    for label, expression in iter_expressions(definition):
        try:
            kind = infer_kind(expression.tree, Scope(params, kinds))
        except ExpressionError as exc:
            errors.append(DefinitionError(expression.line, expression.column + exc.offset,
                                          f"{label}: {exc.message}"))
            continue
        if label.startswith("indicators."):
            kinds[label.removeprefix("indicators.")] = kind
    return errors
