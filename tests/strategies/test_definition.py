"""The strategy language: every kind of bad definition is refused with its line and column."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tradeloop.strategies.compiler import compile_strategy
from tradeloop.strategies.definition import (
    MAX_CALLS,
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


def first_error(text: str) -> tuple[int, int, str]:
    errors = errors_of(text)
    assert errors, text
    return errors[0]


def rule(expression: str) -> str:
    return HEADER + f'entry:\n  long: "{expression}"\n'


class TestNumberLimits:
    @pytest.mark.parametrize("number", ["0", "1e15", "-1e15", "1e-15", "0.000000000000001",
                                        "999999999999999", "0.0", "1_000", "0x1F"])
    def test_numbers_within_the_limits_are_taken(self, number: str) -> None:
        assert errors_of(rule(f"close > {number}")) == []

    @pytest.mark.parametrize(("number", "fragment"), [
        ("1e400", "too large"), ("1e16", "too large"), ("-1e16", "too large"),
        ("9" * 990, "too large"), ("1e-16", "too small"), ("1e-400", "too small"),
        ("0.0000000000000001", "too small"),
    ])
    def test_literals_out_of_range_are_refused_at_their_column(self, number: str,
                                                               fragment: str) -> None:
        line, column, message = only_error(rule(f"close > {number}"))
        assert (line, column) == (4, 18 + number.startswith("-")) and fragment in message

    def test_a_huge_period_is_refused_not_raised(self) -> None:
        line, column, message = only_error(HEADER + "entry: {long: close > sma(close, 1e400)}\n")
        assert (line, column) == (3, 34) and "too large" in message

    @pytest.mark.parametrize(("value", "fragment"), [
        ("9" * 4000, "too large"), ("9" * 5000, "too large"), ("1.0e+400", "too large"),
        ("1.0e+16", "too large"), ("1.0e-400", "too small"), (".inf", "finite"),
        ("-.inf", "finite"), (".nan", "finite"), ("abc", "must be a number"),
    ])
    def test_params_out_of_range_are_refused_at_their_value(self, value: str,
                                                            fragment: str) -> None:
        line, column, message = first_error(HEADER + f"params: {{n: {value}}}\n"
                                            "entry: {long: close > n}\n")
        assert (line, column) == (3, 13)
        assert message.startswith("param 'n' ") and fragment in message

    def test_risk_values_of_thousands_of_digits_are_refused(self) -> None:
        line, _, message = only_error(HEADER + "entry: {long: true}\n"
                                      f"risk: {{stop_loss_pct: {'9' * 5000}}}\n")
        assert line == 4 and "risk.stop_loss_pct is too large" in message


class TestFunctionArguments:
    @pytest.mark.parametrize(("expression", "fragment"), [
        ("macd(close, 26, 12) > 0", "fast < slow"),
        ("macd_signal(close, 26, 12, 9) > 0", "fast < slow"),
        ("crossover(1, 2)", "at least one argument must be a series"),
        ("min(1, 2) > 0", "at least one argument must be a series"),
        ("sma(close, 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 "
         "* 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15) > 1",
         "whole number from 1 to 100000, got inf"),
        ("sma(close, 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * "
         "1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 - 1e15 * "
         "1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 "
         "* 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15) > 1", "got nan"),
        ("sma(close, 100001) > 1", "whole number from 1 to 100000"),
        ("bbands_upper(close, 20, 0) > 1", "k must be above 0"),
    ])
    def test_what_a_function_would_refuse_is_refused_at_validation(
            self, expression: str, fragment: str) -> None:
        line, column, message = first_error(rule(expression))
        assert line == 4 and column >= 9 and fragment in message

    def test_a_refused_param_override_is_an_error_not_an_exception(self) -> None:
        definition = parse_definition(SMA_CROSS)
        for value, fragment in ((float("inf"), "finite"), (float("nan"), "finite"),
                                (10 ** 4000, "too large"), (1e16, "too large")):
            with pytest.raises(StrategyDefinitionError, match=f"param 'fast' .*{fragment}"):
                compile_strategy(definition, {"fast": value})


class TestNestingLimits:
    @pytest.mark.parametrize("text", [
        "[" * 3000 + "]" * 3000, "{a: " * 3000 + "1" + "}" * 3000, "- " * 3000 + "x",
        HEADER + "description: " + "[" * 11 + "]" * 11 + "\n",
        "".join(f"{'  ' * i}a{i}:\n" for i in range(12)) + "  " * 12 + "x\n",
    ])
    def test_yaml_deeper_than_the_limit_is_refused_before_it_is_composed(
            self, text: str) -> None:
        started = time.perf_counter()
        _, _, message = only_error(text)
        assert "nested deeper than 10 levels" in message
        assert time.perf_counter() - started < 0.05

    def test_yaml_at_the_limit_is_read(self) -> None:
        message = only_error(HEADER + "description: " + "[" * 9 + "]" * 9 + "\n"
                             "entry: {long: true}\n")[2]
        assert message == "description must be text"

    @pytest.mark.parametrize("depth", [33, 100, 199, 1000])
    def test_parentheses_deeper_than_the_limit_are_refused(self, depth: int) -> None:
        expression = "(" * depth + "close" + ")" * depth + " > 1"
        _, _, message = only_error(rule(expression))
        assert "nested deeper than 32 levels" in message or "longer than" in message

    def test_parentheses_at_the_limit_are_taken(self) -> None:
        assert errors_of(rule("(" * 32 + "close" + ")" * 32 + " > 1")) == []


class TestEvaluationNeverRaises:
    @pytest.mark.parametrize("expression", [
        "close > 1 / 0", "close > 0 / 0", "close / 0 > 1",
        "crossover(close, 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 "
        "* 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15 * 1e15)",
        "min(close, 1 / 0) > max(1 / 0 - 1 / 0, low)",
        "sma(close, 100000) > wma(close, 100000)",
    ])
    def test_valid_expressions_evaluate_on_any_bars(self, expression: str) -> None:
        compiled = compile_strategy(parse_definition(rule(expression)))
        for closes in ([1.0], [1.0, 2.0], [float(x) for x in range(1, 50)]):
            signals = compiled.evaluate(TestCompile().bars(closes))
            assert signals.entry_long.dtype == bool and len(signals.entry_long) == len(closes)


def test_function_calls_are_bounded_over_the_whole_definition() -> None:
    indicators = "".join(f"  i{i}: sma(close, {i + 2}) + ema(close, {i + 2})\n"
                         for i in range(MAX_CALLS // 2))
    text = HEADER + "indicators:\n" + indicators + "entry:\n  long: rsi(close) > 50\n"
    line, column, message = only_error(text)
    assert (line, column) == (5 + MAX_CALLS // 2, 9)
    assert f"entry.long: more than {MAX_CALLS} function calls" in message
    assert errors_of(text.replace("rsi(close) > 50", "close > 50")) == []
