"""The invariant of the strategy language: a definition that validates can be syntax-tested and
backtested without an exception; one that does not validate is refused with positioned errors,
never an exception.

Hypothesis writes definitions as a user (or an attacker) would: numbers of every size and
spelling (huge, tiny, non-finite, 990-digit), every function of the language with right and
wrong arguments, nested expressions and parentheses, YAML nesting, params and param overrides.
Each one goes down the real path: validation, the compiled definition of the service, the
syntax test's report per symbol, and the backtest's simulation and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tradeloop.backtest.engine import BacktestOptions
from tradeloop.backtest.metrics import compute_metrics
from tradeloop.backtest.service import simulate
from tradeloop.errors import AppError
from tradeloop.market_data.service import BarArrays
from tradeloop.strategies import service
from tradeloop.strategies.definition import validate_definition
from tradeloop.strategies.expressions import MAX_PERIOD, SERIES_NAMES
from tradeloop.strategies.indicators import FUNCTIONS
from tradeloop.strategies.schemas import SyntaxTestResponse

PARAM_NAMES = ("p0", "p1", "p2")
EDGE_NUMBERS = (
    "0", "1", "2", "14", "0.5", "-3", "1e15", "1e16", "1e-15", "1e-16", "1e400", "1e-400",
    "1e308", "5e-324", "9" * 17, "9" * 990, "0x1F", "1_000", str(MAX_PERIOD),
    str(MAX_PERIOD + 1), "1.5", "100000.0",
)
# YAML spellings: floats need a dot and a signed exponent, .inf and .nan are YAML's own.
EDGE_YAML_NUMBERS = (
    *EDGE_NUMBERS, "1.0e+400", "1.0e-400", "1.0e+15", ".inf", "-.inf", ".nan", "9" * 4000,
    "9" * 5000, "1:30", "017", "true", "text", "[1]",
)


def literals(spellings: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(spellings), st.integers(-1000, 1000).map(str),
                     st.floats(-1e6, 1e6).map(repr),
                     st.floats(allow_nan=False, allow_infinity=False).map(repr))


SMALL = st.integers(1, 60).map(str)
PARAM = st.sampled_from(PARAM_NAMES)
ARITHMETIC = st.sampled_from("+-*/")
SPECS = sorted(FUNCTIONS.values(), key=lambda spec: spec.name)


@dataclass(frozen=True)
class Grammar:
    """How one kind of author writes definitions. Built once per kind: building strategies
    per example would cost more than running the example."""

    number: st.SearchStrategy[str]       # a number in an expression
    period: st.SearchStrategy[str]       # a period/width argument
    yaml_number: st.SearchStrategy[str]  # a param or risk value
    parentheses: st.SearchStrategy[int]  # around a rule
    yaml_depth: st.SearchStrategy[int]   # lists around the description
    any_arity: bool                      # calls with any number of arguments

    def calls(self, arguments: st.SearchStrategy[str], *,
              returning_bool: bool) -> st.SearchStrategy[str]:
        """Calls of the language's functions of the kind asked for (any kind, sometimes, for
        a careless author), series arguments drawn from `arguments`."""
        wanted = [spec for spec in SPECS if spec.returns_bool == returning_bool]
        specs = st.one_of(st.sampled_from(wanted), st.sampled_from(SPECS)) if self.any_arity \
            else st.sampled_from(wanted)

        @st.composite
        def call(draw: st.DrawFn) -> str:
            spec = draw(specs)
            most = spec.series_args + len(spec.periods)
            count = draw(st.integers(0 if self.any_arity else most - len(spec.defaults), most
                                     + self.any_arity))
            drawn = [draw(arguments if i < spec.series_args else self.period)
                     for i in range(count)]
            if spec.accepts_scalars and drawn and draw(st.booleans()):
                drawn[draw(st.integers(0, len(drawn) - 1))] = draw(self.number)
            return f"{spec.name}({', '.join(drawn)})"

        return call()

    def series_over(self, names: tuple[str, ...]) -> st.SearchStrategy[str]:
        """Series expressions reading `names`: calls, arithmetic and negation, nested."""
        return st.recursive(
            st.sampled_from(names),
            lambda children: st.one_of(
                self.calls(children, returning_bool=False),
                st.tuples(children, ARITHMETIC, st.one_of(children, self.number)).map(" ".join),
                children.map(lambda text: f"-({text})")),
            max_leaves=6)

    def conditions(self) -> st.SearchStrategy[str]:
        series = self.series_over((*SERIES_NAMES, "i0", "i1"))
        comparison = st.tuples(series, st.sampled_from(("<", ">", "<=", "==", "!=")),
                               st.one_of(series, self.number)).map(" ".join)
        return st.recursive(
            st.one_of(comparison, self.calls(series, returning_bool=True),
                      st.sampled_from(("true", "false"))),
            lambda children: st.one_of(
                st.tuples(children, st.sampled_from(("and", "or")), children).map(" ".join),
                children.map(lambda text: f"not ({text})")),
            max_leaves=3)

    def definitions(self) -> st.SearchStrategy[str]:
        return definitions(self.yaml_number, self.yaml_depth,
                           self.series_over(SERIES_NAMES),
                           st.one_of(self.series_over((*SERIES_NAMES, "i0")), self.number),
                           self.conditions(), self.parentheses)


@st.composite
def definitions(draw: st.DrawFn, yaml_number: st.SearchStrategy[str],
                yaml_depth: st.SearchStrategy[int], indicator_0: st.SearchStrategy[str],
                indicator_1: st.SearchStrategy[str], condition: st.SearchStrategy[str],
                parentheses: st.SearchStrategy[int]) -> str:
    params = draw(st.dictionaries(PARAM, yaml_number, min_size=len(PARAM_NAMES)))
    sides = draw(st.sets(st.sampled_from(("long", "short")), min_size=1))
    around = draw(parentheses)
    rules = {side: "(" * around + draw(condition) + ")" * around for side in sides}
    exits = {side: draw(condition) for side in draw(st.sets(st.just("long")))}
    depth = draw(yaml_depth)
    lines = ["name: generated", "symbols: [AAA]",
             "params: {" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}",
             "description: " + "[" * depth + "x" + "]" * depth,
             "indicators:", f'  i0: "{draw(indicator_0)}"', f'  i1: "{draw(indicator_1)}"',
             "entry:", *(f'  {side}: "{text}"' for side, text in rules.items())]
    lines += ["exit:", *(f'  {side}: "{text}"' for side, text in exits.items())] if exits else []
    if draw(st.booleans()):
        lines.append(f"risk: {{stop_loss_pct: {draw(yaml_number)}, "
                     f"take_profit_pct: {draw(yaml_number)}}}")
    return "\n".join(lines) + "\n"


# A careful author: numbers within the limits (their edges included), right arities, modest
# nesting; most of these validate, and they exercise every function on real runs.
CAREFUL = Grammar(
    number=st.one_of(SMALL, PARAM, st.sampled_from(
        ("0", "0.5", "-3", "1e15", "-1e15", "1e-15", "999999999999999", str(MAX_PERIOD)))),
    period=st.one_of(SMALL, PARAM, st.tuples(SMALL, st.sampled_from("+*"), PARAM)
                     .map(" ".join), st.just(str(MAX_PERIOD))),
    yaml_number=st.one_of(SMALL, st.sampled_from(("0", "1.0e+15", "0.5", str(MAX_PERIOD)))),
    parentheses=st.integers(0, 20), yaml_depth=st.integers(0, 0), any_arity=False)
# A hostile or careless one: any number in any spelling, any arity, deep nesting.
HOSTILE = Grammar(
    number=st.one_of(SMALL, PARAM, literals(EDGE_NUMBERS)),
    period=st.one_of(SMALL, PARAM, literals(EDGE_NUMBERS)),
    yaml_number=st.one_of(SMALL, literals(EDGE_YAML_NUMBERS)),
    parentheses=st.one_of(st.integers(0, 40), st.sampled_from((200, 400))),
    yaml_depth=st.one_of(st.integers(0, 14), st.just(3000)), any_arity=True)


def bar_series(kind: str, count: int) -> BarArrays:
    rng = np.random.default_rng(count)
    if kind == "flat":
        close = np.full(count, 50.0)
    elif kind == "tiny":
        close = 1e-8 * np.exp(np.cumsum(rng.normal(0, 0.05, count)))
    else:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, count)))
    ts = np.datetime64("2021-01-01", "ns") + np.arange(count) * np.timedelta64(1, "D")
    return BarArrays(symbol="AAA", timeframe="1d", ts=ts, open=close * 1.001,
                     high=close * 1.01, low=close * 0.99, close=close,
                     volume=np.full(count, 1e9))


BARS = [bar_series(kind, count) for kind, count in
        (("walk", 1), ("walk", 2), ("walk", 7), ("walk", 120), ("flat", 40), ("tiny", 60))]


def syntax_test_and_backtest(text: str, bars: BarArrays, overrides: dict | None) -> None:
    """What POST .../syntax-test and a backtest run do with a stored definition."""
    compiled = service.compile_definition(text, overrides)
    report = service.signal_report(bars, compiled)
    SyntaxTestResponse.model_validate({
        "strategy_id": "00000000-0000-0000-0000-000000000001", "version": 1,
        "timeframe": "1d", "params": compiled.params, "duration_ms": 0.0, "symbols": [report]})
    compute_metrics(simulate(compiled, [("AAA", bars)], BacktestOptions()))


@pytest.fixture(scope="module", autouse=True)
def warm_up() -> None:
    """Run a strategy once, so that the first example does not pay the lazy imports
    (scipy.signal alone takes ~1 s) within hypothesis's deadline."""
    syntax_test_and_backtest("name: warm\nsymbols: [AAA]\nindicators: {e: ema(close, 5)}\n"
                             "entry: {long: crossover(e, sma(close, 10))}\n", BARS[3], None)


@settings(max_examples=150, deadline=timedelta(seconds=2), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=st.one_of(CAREFUL.definitions(), HOSTILE.definitions()), bars=st.sampled_from(BARS),
       overrides=st.one_of(st.none(), st.dictionaries(
           st.sampled_from(PARAM_NAMES), st.one_of(st.integers(-10**20, 10**20), st.floats()),
           max_size=2)))
def test_what_validates_runs_and_what_does_not_is_refused_with_positions(
        text: str, bars: BarArrays, overrides: dict | None) -> None:
    errors = validate_definition(text)
    assert all(e.line >= 1 and e.column >= 1 and e.message for e in errors), errors
    event("refused" if errors else "valid")
    if errors:
        return
    syntax_test_and_backtest(text, bars, None)
    try:
        syntax_test_and_backtest(text, bars, overrides)
    except AppError as exc:  # a refused override: a 422 listing the errors
        assert exc.status_code == 422 and exc.details["errors"], exc.details
