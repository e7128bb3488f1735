"""The metrics a backtest reports: names, categories, kinds, units and conventions.

No NumPy here: the database columns (backtest/models.py) and the sweep's metric names
(backtest/sweeps.py) are built from this catalogue without loading the numeric code. Every metric is
documented with its formula in docs/metrics.md.

backtesting.py 0.6.6's ``compute_stats`` (backtesting/_stats.py) is the reference: every metric
it also reports keeps its definition, sign and scale (percentages x 100, drawdowns negative)
and equals its value to floating-point noise.

Conventions:

* Annualisation: the bar equity is resampled to its last value per calendar day (UTC) and
  those day-to-day returns are annualised with 252 periods a year, or 365 when the bars have
  weekends (more than 60 % of a 7-day week's share on Saturday/Sunday, i.e. crypto).
  Weekly, monthly and yearly bars resample to weeks/months/years with 52/12/1 periods instead.
  The bar spacing is the median spacing of the last 100 bars. All of this is backtesting.py's
  rule; "period returns" below means these (daily, for daily and intraday bars).
* Annual return and volatility are geometric (compounded), as in backtesting.py; the
  ``*_arithmetic`` ratios and the benchmark ratios use empyrical's arithmetic mean and sample
  standard deviation.
* Risk-free rate and required return are 0.
* Benchmark: equal-weight buy & hold of every symbol in ``benchmark_close``, each bought at
  its first finite close from its ``benchmark_start`` bar on (the end of the indicators'
  warm-up; cash before it); buy & hold return is the mean of the symbols' returns. The
  market-relative metrics (beta, correlation, tracking error, captures) compare with the same
  portfolio held from each symbol's first finite close; beta uses its log returns per bar.
* Durations are days as float; drawdown and trade durations are ceiled to the resolution of
  the bar spacing (a day for daily bars) like backtesting.py's.
* Trades.return_pct is a fraction like backtesting.py's Trade.pl_pct (0.05 is 5 %).
* Undefined values (no trades, zero variance, a single bar) are None, never NaN or inf.
  The formulas run inside compute_metrics' ``np.errstate(all="ignore")``: the NaN and inf
  of x / 0, log(0) or an overflow are expected there, and become None (clean_value).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Value = float | int | datetime | None


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its column, its category, its value's kind and a one-line description."""

    name: str            # snake_case, also the DB column name
    category: str        # one of CATEGORIES
    kind: str            # "float" | "int" | "datetime"
    description: str     # one line, with unit


CATEGORIES = ("period", "returns", "risk", "risk_adjusted", "drawdown", "trades", "exposure",
              "benchmark")
KINDS = ("float", "int", "datetime")

# One metric a line: name, kind and description in columns (two or more spaces apart), under
# its [category]; a table reads and diffs better than ~100 tuples of the same shape.
_TABLE = """
[period]
start                         datetime  first bar's timestamp (UTC)
end                           datetime  last bar's timestamp (UTC)
duration_days                 float     end - start, in days
years                         float     end - start in years of 365.25 days (CAGR's clock)
num_bars                      int       number of bars (timestamps)
num_days                      int       number of calendar days (UTC) with at least one bar
periods_per_year              int       annualisation factor: 252, 365, 52, 12 or 1
[returns]
equity_initial                float     equity at the first bar, in cash
equity_final                  float     equity at the last bar, in cash
equity_peak                   float     highest equity, in cash
net_profit                    float     equity_final - equity_initial, in cash
return_pct                    float     total return of the equity, in %
return_ann_pct                float     geometric annualised period return, in %
cagr_pct                      float     compound annual growth rate over calendar time, in %
avg_daily_return_pct          float     arithmetic mean period return, in %
positive_days_pct             float     share of period returns above 0, in %
best_day_pct                  float     best period (day) return, in %
worst_day_pct                 float     worst period (day) return, in %
best_month_pct                float     best calendar-month return, in %
worst_month_pct               float     worst calendar-month return, in %
best_year_pct                 float     best calendar-year return, in %
worst_year_pct                float     worst calendar-year return, in %
[risk]
volatility_ann_pct            float     annualised volatility of compounded returns, in %
volatility_daily_pct          float     sample std of period returns, in %
downside_deviation_ann_pct    float     annualised RMS of negative period returns, in %
var_95_pct                    float     historical 95 % value at risk (5th pct. period return), in %
cvar_95_pct                   float     mean of the worst 5 % of period returns, in %
skew                          float     sample skewness of period returns (bias-corrected), unitless
kurtosis                      float     sample excess kurtosis of period returns (bias-corrected)
[risk_adjusted]
sharpe_ratio                  float     return_ann_pct / volatility_ann_pct, unitless
sortino_ratio                 float     annual return / downside deviation, unitless
calmar_ratio                  float     annual return / max drawdown, unitless
sharpe_ratio_arithmetic       float     mean / std of period returns x sqrt(periods)
sortino_ratio_arithmetic      float     mean period return x periods / downside dev.
omega_ratio                   float     sum of gains / sum of losses of period returns, unitless
tail_ratio                    float     |95th percentile| / |5th percentile| of period returns
stability                     float     R^2 of cumulative log return against time, 0..1
recovery_factor               float     net profit / max drawdown in cash, unitless
[drawdown]
max_drawdown_pct              float     deepest drop below the running peak, in % (<= 0)
avg_drawdown_pct              float     mean depth of drawdown episodes, in % (<= 0)
max_drawdown_duration_days    float     longest drawdown episode, in days
avg_drawdown_duration_days    float     mean drawdown episode length, in days
max_drawdown_cash             float     largest drop below the running peak, in cash (<= 0)
current_drawdown_pct          float     drawdown at the last bar, in % (<= 0)
num_drawdowns                 int       number of drawdown episodes
time_in_drawdown_pct          float     share of bars below the running peak, in %
ulcer_index                   float     root mean square of per-bar drawdown, in %
[trades]
num_trades                    int       number of closed trades
win_rate_pct                  float     share of trades with pnl > 0, in %
best_trade_pct                float     highest trade return, in %
worst_trade_pct               float     lowest trade return, in %
avg_trade_pct                 float     geometric mean trade return, in %
max_trade_duration_days       float     longest trade (exit - entry time), in days
avg_trade_duration_days       float     mean trade duration, in days
profit_factor                 float     sum of positive / |sum of negative| trade returns
expectancy_pct                float     arithmetic mean trade return, in %
sqn                           float     system quality number: sqrt(n) x mean pnl / std pnl
kelly_criterion               float     win rate - loss rate / payoff ratio, fraction
commissions                   float     total commissions paid, in cash
num_winning_trades            int       trades with pnl > 0
num_losing_trades             int       trades with pnl < 0
num_long_trades               int       trades with direction +1
num_short_trades              int       trades with direction -1
long_win_rate_pct             float     win rate of long trades, in %
short_win_rate_pct            float     win rate of short trades, in %
long_pnl                      float     net pnl of long trades, in cash
short_pnl                     float     net pnl of short trades, in cash
gross_profit                  float     sum of winning trades' pnl, in cash (>= 0)
gross_loss                    float     sum of losing trades' pnl, in cash (<= 0)
profit_factor_pnl             float     gross_profit / |gross_loss|, unitless
avg_trade_pnl                 float     mean trade pnl, in cash
largest_win                   float     largest winning trade's pnl, in cash
largest_loss                  float     largest losing trade's pnl, in cash (< 0)
avg_win_pct                   float     mean return of winning trades, in %
avg_loss_pct                  float     mean return of losing trades, in %
payoff_ratio                  float     mean winning pnl / |mean losing pnl|, unitless
max_consecutive_wins          int       longest run of winning trades, in entry order
max_consecutive_losses        int       longest run of losing trades, in entry order
avg_bars_in_trade             float     mean exit_index - entry_index, in bars
max_bars_in_trade             int       largest exit_index - entry_index, in bars
trades_per_year               float     num_trades / years
num_stop_loss_exits           int       trades closed by a stop loss
num_take_profit_exits         int       trades closed by a take profit
[exposure]
exposure_time_pct             float     share of bars from a trade's entry to its exit bar, in %
exposure_adjusted_return_pct  float     return_pct / exposure share, in %
longest_flat_period_days      float     longest stretch without a position, in days
[benchmark]
buy_hold_return_pct           float     equal-weight buy & hold return after the warm-up, in %
buy_hold_return_ann_pct       float     buy & hold geometric annual return, in %
buy_hold_max_drawdown_pct     float     buy & hold max drawdown, in % (<= 0)
excess_return_pct             float     return_pct - buy_hold_return_pct, in % points
alpha_pct                     float     Jensen alpha: return - beta x buy & hold return, in %
beta                          float     cov / var of per-bar log returns against the benchmark
correlation                   float     Pearson correlation of period returns with the benchmark
tracking_error_ann_pct        float     annualised std of active period returns, in %
information_ratio             float     mean / std of active period returns x sqrt(periods)
up_capture                    float     annual return ratio over benchmark-up periods, unitless
down_capture                  float     annual return ratio over benchmark-down periods"""


def _parse(table: str) -> tuple[MetricSpec, ...]:
    specs: list[MetricSpec] = []
    category = ""
    for line in filter(None, table.splitlines()):
        if line.startswith("["):
            category = line.strip("[]")
            continue
        name, kind, description = re.split(r"\s{2,}", line, maxsplit=2)
        specs.append(MetricSpec(name, category, kind, description))
    return tuple(specs)


METRICS: tuple[MetricSpec, ...] = _parse(_TABLE)

# (category, ((name, kind), ...)) in the order of CATEGORIES and METRICS.
LAYOUT: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = tuple(
    (category, tuple((spec.name, spec.kind) for spec in METRICS if spec.category == category))
    for category in CATEGORIES)


def clean_value(value: Any, kind: str) -> Value:
    """Plain Python values for the database: NaN / inf / missing become None."""
    if value is None:
        return None
    if kind == "datetime":
        return value
    number = float(value)
    if not math.isfinite(number):
        return None
    return int(number) if kind == "int" else number
