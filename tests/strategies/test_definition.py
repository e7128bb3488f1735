"""The strategy language: every kind of bad definition is refused with its line and column."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tradeloop.strategies.compiler import compile_strategy
from tradeloop.strategies.definition import (
    MAX_DEFINITION_CHARS,
    StrategyDefinitionError,
    parse_definition,
    validate_definition,
)
from tradeloop.strategies.demo import DEMO_DEFINITIONS, MARKET_STRUCTURE, SMA_CROSS

HEADER = "name: t\nsymbols: [AAPL]\n"


def errors_of(text: str) -> list[tuple[int, int, str]]:
    return [(e.line, e.column, e.message) for e in validate_definition(text)]


def only_error(text: str) -> tuple[int, int, str]:
    errors = errors_of(text)
    assert len(errors) == 1, errors
    return errors[0]


class TestValidDefinitions:
    @pytest.mark.parametrize("text", DEMO_DEFINITIONS)
    def test_demo_definitions_are_valid(self, text: str) -> None:
        assert validate_definition(text) == []

    def test_spec_example_parses_into_its_parts(self) -> None:
        definition = parse_definition(SMA_CROSS)
        assert definition.name == "sma_cross"
        assert definition.timeframe == "1d"
        assert definition.params == {"fast": 10, "slow": 30}
        assert list(definition.indicators) == ["fast_ma", "slow_ma"]
        assert set(definition.entry) == {"long"} and set(definition.exit) == {"long"}
        assert definition.risk.stop_loss_pct == 8
        assert definition.risk.position_size_pct == 100

    def test_short_rules_and_every_function(self) -> None:
        text = HEADER + """\
params: {n: 14}
indicators:
  m: macd(close) - macd_signal(close, 12, 26, 9)
  band: bbands_upper(close, 20, 2.5) - bbands_lower(close)
  vol: atr(n) / close * 100
  mix: max(abs(roc(close, 5)), min(stdev(close, 10), 3)) + wma(close, 5) - ema(close, 5)
entry:
  long: crossover(m, 0) and rsi(close) < 70 and not (band > 50)
  short: crossunder(m, 0) or close < lowest(low, n) or shift(close, 1) > highest(high, 3)
exit: {long: vol > 5, short: 1 < rsi(close, n) < 30}
"""
        assert validate_definition(text) == []


class TestRefusals:
    def test_yaml_syntax_error_has_its_position(self) -> None:
        line, _, message = only_error("name: t\nsymbols: [AAPL\nentry: 1\n")
        assert line == 3 and "YAML syntax error" in message

    def test_unknown_function(self) -> None:
        line, column, message = only_error(HEADER + "entry: {long: foo(close) > 1}\n")
        assert (line, column) == (3, 15)
        assert "unknown function 'foo'" in message

    def test_wrong_arity(self) -> None:
        line, column, message = only_error(HEADER + "entry:\n  long: sma(close) > 1\n")
        assert (line, column) == (4, 9)
        assert "sma(series, period) takes 2 arguments, got 1" in message

    def test_unknown_name(self) -> None:
        line, column, message = only_error(HEADER + "entry:\n  long: close > slow_ma\n")
        assert (line, column) == (4, 17)
        assert "unknown name 'slow_ma'" in message

    def test_cycle_between_indicators(self) -> None:
        text = HEADER + "indicators:\n  a: b + 1\n  b: c * 2\n  c: a\nentry: {long: a > 1}\n"
        errors = errors_of(text)
        assert any("cycle" in message and "a" in message and "b" in message
                   for _, _, message in errors), errors
        assert errors[0][0] in (4, 5, 6)

    def test_expression_nested_too_deep(self) -> None:
        expression = "close > 0 and " + "not " * 40 + "close > 1"
        _, _, message = only_error(HEADER + f"entry: {{long: {expression}}}\n")
        assert "nested deeper than" in message

    def test_definition_over_the_size_limit(self) -> None:
        text = HEADER + "description: " + "x" * MAX_DEFINITION_CHARS + "\nentry: {long: true}\n"
        assert "longer than" in only_error(text)[2]

    @pytest.mark.parametrize(("expression", "fragment"), [
        ("__import__('os')", "unknown function '__import__'"),
        ("close.__class__", "attribute access is not allowed"),
        ("(lambda: 1)()", "only functions of the language can be called"),
        ("f = lambda: 1", "syntax error"),
        ("lambda: close > 1", "lambdas are not allowed"),
        ("[x for x in close]", "comprehensions are not allowed"),
        ("close[0] > 1", "indexing is not allowed"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("close ** 2 > 1", "operator ** is not allowed"),
        ("sma(close, period=5) > 1", "positional arguments only"),
        ("'a' == 'a'", "only numbers"),
        ("_secret > 1", "names starting with '_'"),
        ("close if close else 1", "conditional expressions are not allowed"),
        ("getattr(close, 'x')", "unknown function 'getattr'"),
    ])
    def test_python_escapes_are_refused(self, expression: str, fragment: str) -> None:
        text = HEADER + "entry:\n  long: \"" + expression.replace('"', '\\"') + "\"\n"
        errors = errors_of(text)
        assert errors, expression
        assert any(fragment in message for _, _, message in errors), errors
        assert all(line == 4 for line, _, _ in errors)

    def test_anchors_and_aliases_are_refused(self) -> None:
        _, _, message = only_error("a: &x [1, 2]\nb: *x\n")
        assert "anchors" in message

    def test_python_object_tags_are_refused(self) -> None:
        _, _, message = only_error(HEADER + "entry: !!python/object/apply:os.system ['ls']\n")
        assert "tags are not allowed" in message

    def test_rule_must_be_a_condition(self) -> None:
        _, _, message = only_error(HEADER + "entry: {long: sma(close, 5)}\n")
        assert "must be a condition" in message

    def test_period_must_be_a_positive_whole_number(self) -> None:
        _, _, message = only_error(HEADER + "params: {n: 0}\nentry: {long: sma(close, n) > 1}\n")
        assert "whole number from 1" in message

    def test_period_cannot_vary_bar_by_bar(self) -> None:
        _, _, message = only_error(HEADER + "entry: {long: sma(close, close) > 1}\n")
        assert "cannot vary bar by bar" in message

    def test_unknown_keys_and_missing_parts_are_each_listed(self) -> None:
        errors = errors_of("colour: red\nrisk: {stop_loss_pct: 150, leverage: 3}\n")
        messages = " | ".join(message for _, _, message in errors)
        for fragment in ("unknown key 'colour'", "missing key 'name'", "missing key 'symbols'",
                         "missing key 'entry'", "unknown key 'leverage'", "risk.stop_loss_pct"):
            assert fragment in messages

    def test_reserved_and_duplicate_names(self) -> None:
        errors = errors_of(HEADER + "params: {close: 1}\nindicators:\n  sma: close\n"
                           "entry: {long: true}\nentry: {long: false}\n")
        messages = " | ".join(message for _, _, message in errors)
        assert "'close' is reserved" in messages and "'sma' is reserved" in messages
        assert "duplicate key 'entry'" in messages


def test_validation_p95_is_well_under_100_ms() -> None:
    durations = []
    for _ in range(50):
        started = time.perf_counter()
        assert validate_definition(MARKET_STRUCTURE) == []
        durations.append(time.perf_counter() - started)
    assert float(np.percentile(durations, 95)) < 0.1


class TestCompile:
    def bars(self, closes: list[float]) -> dict[str, np.ndarray]:
        close = np.array(closes, dtype=float)
        return {"open": close, "high": close + 1, "low": close - 1, "close": close,
                "volume": np.ones_like(close)}

    def test_market_structure_breaks(self) -> None:
        compiled = compile_strategy(parse_definition(MARKET_STRUCTURE), {"lookback": 3})
        closes = [10, 11, 12, 11, 10, 13.5, 12, 11, 10, 8.5, 9]
        signals = compiled.evaluate(self.bars(closes))
        # Prior 3 highs at bar 5 are 13, 12, 11 → close 13.5 breaks above 13.
        assert list(np.flatnonzero(signals.entry_long)) == [5]
        assert list(np.flatnonzero(signals.exit_long)) == [9]
        assert list(np.flatnonzero(signals.entry_short)) == [9]

    def test_param_overrides_are_checked(self) -> None:
        definition = parse_definition(SMA_CROSS)
        with pytest.raises(StrategyDefinitionError, match="unknown param 'fastest'"):
            compile_strategy(definition, {"fastest": 3})
        with pytest.raises(StrategyDefinitionError, match="whole number"):
            compile_strategy(definition, {"fast": 0})
        assert compile_strategy(definition, {"fast": 5}).params == {"fast": 5, "slow": 30}

    def test_missing_rules_never_fire(self) -> None:
        signals = compile_strategy(parse_definition(SMA_CROSS)).evaluate(
            self.bars([float(x) for x in range(1, 60)]))
        assert not signals.entry_short.any() and not signals.exit_short.any()
        assert signals.entry_long.dtype == bool
