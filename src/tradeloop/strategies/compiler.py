"""From a checked definition (and optional param overrides) to per-bar signal arrays.

The same compiled strategy drives backtests and live evaluation: give it one symbol's bars
as arrays (oldest first) and it yields four boolean arrays — entry_long, exit_long,
entry_short, exit_short — computed at each bar's close from that bar and earlier ones only.
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
    """Boolean arrays, one entry per bar; True where the rule fires at that bar's close."""

    entry_long: np.ndarray
    exit_long: np.ndarray
    entry_short: np.ndarray
    exit_short: np.ndarray

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
        return StrategySignals(**values)


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
