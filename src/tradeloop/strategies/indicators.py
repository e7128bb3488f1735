"""Vectorised technical-analysis functions of the strategy language (NumPy/SciPy only).

Functions take float64 series (one value per bar, oldest first) and return a new float64 series
of the same length, NaN during warm-up (crossover/crossunder: bool). No look-ahead: the value
at index t depends only on inputs at indices <= t. A leading NaN run (the warm-up of an inner
indicator, as in ``ema(sma(close, 10), 5)``) is skipped: computing starts at the first bar
where all the function's series are valid, so warm-ups add up; "bar i" below counts from
there. NaN is not expected after that prefix. Input shorter than the warm-up gives all NaN,
never an exception. Periods must be ints >= 1 (shift: >= 0; ValueError otherwise); the float
parameter is the ``k`` of the Bollinger bands, any finite number (``FunctionSpec.float_params``).

- sma(x, n): mean of the last n values; first value at bar n-1 (TA-Lib SMA).
- ema(x, n): alpha 2/(n+1), seeded at bar n-1 with the mean of the first n values (TA-Lib EMA).
- wma(x, n): weights 1..n, newest heaviest; first value at bar n-1 (TA-Lib WMA).
- rsi(x, n=14): Wilder smoothing (alpha 1/n) of gains and losses, seeded with their means over
  the first n changes; first value at bar n; 0 if avg gain + avg loss == 0 (TA-Lib RSI).
- macd(x, fast=12, slow=26): ema_fast - ema_slow aligned as TA-Lib MACD does: both EMAs are
  seeded at bar slow-1, the fast one with the mean of the `fast` values ending there (so it is
  NOT plain ema(x, fast) - ema(x, slow)); first value at bar slow-1. Needs fast < slow.
- macd_signal(x, fast=12, slow=26, signal=9): ema(macd line, signal); first value at bar
  slow+signal-2 (TA-Lib MACD signal).
- bbands_upper / bbands_lower(x, n=20, k=2.0): sma +/- k * stdev (ddof=0); first value at bar
  n-1 (TA-Lib BBANDS, SMA type).
- atr(high, low, close, n=14): Wilder average (seeded with the mean of TR[1..n]) of the true
  range max(h-l, |h-c[t-1]|, |l-c[t-1]|), which starts at bar 1; first value at bar n
  (TA-Lib ATR; atr(1) is TA-Lib TRANGE).
- stdev(x, n): population standard deviation (ddof=0) of the last n values; first value at bar
  n-1 (TA-Lib STDDEV, nbdev 1). Computed around a per-block centre instead of from raw sums of
  squares, so it keeps its digits on low-volatility series where TA-Lib loses some.
- highest / lowest(x, n): max / min of the last n values including the current one; first
  value at bar n-1 (TradingView ta.highest / ta.lowest, TA-Lib MAX / MIN).
- roc(x, n): 100 * (x[t] / x[t-n] - 1); first value at bar n; 0 where x[t-n] == 0 (TA-Lib ROC).
- crossover(a, b): a[t] > b[t] and a[t-1] < b[t-1]; crossunder(a, b): a[t] < b[t] and
  a[t-1] > b[t-1] (strict, as TradingView and backtesting.py); False at t=0 and where any of
  the four is NaN; a or b may be a number.
- shift(x, n): x delayed by n >= 0 bars, NaN for the first n; n < 0 (look-ahead): ValueError.
- abs(x), min(a, b), max(a, b): elementwise, NaN-propagating; min / max accept a number
  (crossover/crossunder/min/max: any number, inf and NaN included, as in a series).

Rolling windows are O(len) block algorithms without the drift of running sums (see below);
EMA / Wilder recursions run in scipy.signal.lfilter.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
SeriesOrNumber = npt.ArrayLike


# --- validation ------------------------------------------------------------------------------

def _series(x: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"expected a one-dimensional series, got shape {arr.shape}")
    return arr


def _int(value: object, name: str, minimum: int | None = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _number(value: object, name: str, *, finite: bool = True) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating)
            or (finite and not math.isfinite(value))):
        raise ValueError(f"{name} must be a{' finite' if finite else ''} number, got {value!r}")
    return float(value)


def _first_valid(x: FloatArray) -> int:
    if x.size and not np.isnan(x[0]):  # the common case, without a pass over the data
        return 0
    valid = ~np.isnan(x)
    return int(valid.argmax()) if valid.any() else x.size


def _from_first_valid(core: Callable[..., FloatArray], *xs: FloatArray) -> FloatArray:
    """core applied to the part of xs after their NaN prefixes, NaN-padded to full length."""
    if len({x.size for x in xs}) > 1:
        raise ValueError(f"series lengths differ: {[x.size for x in xs]}")
    start, size = max(_first_valid(x) for x in xs), xs[0].size
    if start == 0 < size:  # the usual case; every core returns a new array
        return core(*xs)
    out = np.empty(size)
    out[:start] = np.nan
    if start < size:  # cores never see an empty series
        out[start:] = core(*(x[start:] for x in xs))
    return out


# --- building blocks on NaN-free input -------------------------------------------------------
# Series are cut into blocks of n bars (bars k*n .. k*n+n-1). A window of n bars ending at
# column j of block k is the head of block k (columns 0..j) plus the tail of block k-1
# (columns j+1..n-1): every value combines at most 2n terms, O(len) without the drift of a
# running cumulative sum. Fresh large arrays are kept few: allocation dominates on 1e6 bars.

def _prefix(x: FloatArray, n: int, ufunc: np.ufunc = np.add) -> FloatArray:
    """ufunc accumulated along each block, restarting at every block boundary."""
    out = np.empty(x.size)
    whole = x.size - x.size % n
    ufunc.accumulate(x[:whole].reshape(-1, n), axis=1, out=out[:whole].reshape(-1, n))
    ufunc.accumulate(x[whole:], out=out[whole:])
    return out


def _suffix(x: FloatArray, n: int, ufunc: np.ufunc = np.add, empty: float = 0.0) -> FloatArray:
    """suffix[k*n+j] = ufunc over columns j+1.. of block k (`empty` for j = n-1), for the whole
    blocks of x."""
    blocks = x[: x.size - x.size % n].reshape(-1, n)
    out = np.empty(blocks.shape)
    out[:, -1] = empty
    ufunc.accumulate(blocks[:, :0:-1], axis=1, out=out[:, -2::-1])
    return out.ravel()


def _combine(head: FloatArray, tail: FloatArray, n: int, ufunc: np.ufunc = np.add) -> FloatArray:
    """Window ending at t: head[t] (its block up to t) with tail[t-n] (rest of the previous
    block); NaN during warm-up. Reuses head's memory."""
    ufunc(head[n:], tail[: head.size - n], out=head[n:])
    head[: n - 1] = np.nan
    return head


def _window_sum(head: FloatArray, n: int) -> FloatArray:
    """Trailing n-bar sums from block prefix sums `head`: head[t] + (total - prefix) of the
    previous block. One pass fewer than _suffix; the error is still bounded by the magnitude
    of two blocks (no drift)."""
    size = head.size
    out = np.empty(size)
    out[: n - 1] = np.nan
    if size < n:
        return out
    out[n - 1] = head[n - 1]
    np.subtract(head[n:], head[: size - n], out=out[n:])
    whole = (size - n) // n * n
    out[n: n + whole].reshape(-1, n)[:] += head[n - 1: whole: n, None]
    if n + whole < size:
        out[n + whole:] += head[n + whole - 1]
    return out


def _window_extreme(x: FloatArray, n: int, ufunc: np.ufunc, empty: float) -> FloatArray:
    # van Herk / Gil-Werman: O(len) for any n, and faster than scipy.ndimage's filters here.
    return _combine(_prefix(x, n, ufunc), _suffix(x, n, ufunc, empty), n, ufunc)


def _by_block(x: FloatArray, n: int, ufunc: np.ufunc, per_block: FloatArray,
              out: FloatArray) -> FloatArray:
    """out[t] = ufunc(x[t], per_block[block of t]), without materialising the repeat."""
    whole = x.size - x.size % n
    ufunc(x[:whole].reshape(-1, n), per_block[: whole // n, None],
          out=out[:whole].reshape(-1, n))
    if whole < x.size:
        ufunc(x[whole:], per_block[whole // n], out=out[whole:])
    return out


def _mean_var(x: FloatArray, n: int) -> tuple[FloatArray, FloatArray]:
    """Rolling mean and population variance. Bars are taken relative to the first bar of the
    block the window ends in, so squares stay of the order of the variance rather than of the
    price (no catastrophic cancellation in E[y^2] - E[y]^2)."""
    firsts = x[::n]
    y = _by_block(x, n, np.subtract, firsts, np.empty(x.size))
    s1 = _prefix(y, n)
    s2 = _prefix(np.multiply(y, y, out=y), n)
    # Tails feed the windows of the next block: take them relative to its first bar (the last
    # block has no next one and feeds no window: any centre will do).
    z = _by_block(x[: x.size - x.size % n], n, np.subtract, np.append(firsts[1:], 0.0),
                  np.empty(x.size - x.size % n))
    _combine(s1, _suffix(z, n), n)
    _combine(s2, _suffix(np.multiply(z, z, out=z), n), n)
    s1 /= n
    s2 /= n
    s2 -= np.multiply(s1, s1, out=y)
    return _by_block(s1, n, np.add, firsts, s1), np.maximum(s2, 0.0, out=s2)


def _wma(x: FloatArray, n: int) -> FloatArray:
    # In the window ending at column j of block k, a bar at column c weighs c-j+n in block k
    # and c-j in block k-1: sum(c*x) - j*sum(x) + n*head, with c, j < n (mild cancellation).
    col = np.tile(np.arange(n, dtype=np.float64), -(-x.size // n))[: x.size]
    head = _prefix(x, n)
    out = _window_sum(_prefix(col * x, n), n)
    out -= np.multiply(col, _window_sum(head, n), out=col)
    head *= n
    out += head
    out /= n * (n + 1) / 2
    return out


def _smooth(x: FloatArray, n: int, alpha: float, start: int = 0) -> FloatArray:
    """y[t] = y[t-1] + alpha * (x[t] - y[t-1]), seeded at bar m = start+n-1 with the mean of
    x[start:m+1] (TA-Lib's EMA and Wilder seed), NaN before; x[:start] must be finite."""
    m = start + n - 1
    if x.size <= m:
        return np.full(x.size, np.nan)
    seed = x[start: m + 1].mean()
    if alpha == 1.0:
        out = x.copy()
    else:
        # Filter the whole series from the initial state that makes y[m] == seed, so lfilter's
        # output is the result without another 1e6-bar copy. (1-alpha)^m >= e^-2 for start <= 1:
        # well conditioned.
        # Imported here: scipy.signal costs ~1 s at import, and most strategies need no EMA.
        from scipy.signal import lfilter

        weights = alpha * (1.0 - alpha) ** np.arange(m, -1, -1.0)
        state = (seed - weights @ x[: m + 1]) / (1.0 - alpha) ** m
        out = lfilter([alpha], [1.0, alpha - 1.0], x, zi=[state])[0]
    out[:m] = np.nan
    out[m] = seed
    return out


def _ema(x: FloatArray, n: int) -> FloatArray:
    return _smooth(x, n, 2.0 / (n + 1))


def _apply(core: Callable[..., FloatArray], period: object, *series: npt.ArrayLike) -> FloatArray:
    """core(*NaN-free tails of series, n) with the period validated, NaN-padded back."""
    n = _int(period, "period")
    return _from_first_valid(lambda *tails: core(*tails, n), *(_series(x) for x in series))


def _sma(v: FloatArray, n: int) -> FloatArray:
    out = _window_sum(_prefix(v, n), n)
    out /= n
    return out


def _rsi(v: FloatArray, n: int) -> FloatArray:
    gain = np.empty(v.size)
    gain[0] = 0.0  # no change before the first bar; the seed starts at bar 1
    np.subtract(v[1:], v[:-1], out=gain[1:])
    loss = np.negative(gain)
    np.maximum(gain, 0.0, out=gain)
    np.maximum(loss, 0.0, out=loss)
    out, total = _smooth(gain, n, 1.0 / n, start=1), _smooth(loss, n, 1.0 / n, start=1)
    total += out
    with np.errstate(divide="ignore", invalid="ignore"):
        out /= total
    out *= 100.0
    out[total == 0] = 0.0  # no movement at all: TA-Lib's 0 keeps NaN out of later bars
    return out


def _macd(v: FloatArray, fast: int, slow: int) -> FloatArray:
    # TA-Lib seeds the fast EMA at the same bar as the slow one, from the last `fast` values.
    out = _ema(v, slow)
    np.subtract(_ema(v[slow - fast:], fast), out[slow - fast:], out=out[slow - fast:])
    return out


def _atr(high: FloatArray, low: FloatArray, close: FloatArray, n: int) -> FloatArray:
    true_range = np.empty(high.size)
    true_range[0] = 0.0  # undefined without a previous close; the seed starts at bar 1
    tr, prev = true_range[1:], close[:-1]
    np.subtract(high[1:], low[1:], out=tr)
    gap = np.subtract(high[1:], prev)
    np.maximum(tr, np.abs(gap, out=gap), out=tr)
    np.maximum(tr, np.abs(np.subtract(low[1:], prev, out=gap), out=gap), out=tr)
    return _smooth(true_range, n, 1.0 / n, start=1)


def _roc(v: FloatArray, n: int) -> FloatArray:
    out = np.empty(v.size)
    out[:n] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(v[n:], v[:-n], out=out[n:])
    out[n:] -= 1.0
    out[n:] *= 100.0
    out[n:][v[:-n] == 0] = 0.0
    return out


# --- the language's functions ----------------------------------------------------------------

def sma(x: FloatArray, period: int) -> FloatArray:
    return _apply(_sma, period, x)


def ema(x: FloatArray, period: int) -> FloatArray:
    return _apply(_ema, period, x)


def wma(x: FloatArray, period: int) -> FloatArray:
    return _apply(_wma, period, x)


def rsi(x: FloatArray, period: int = 14) -> FloatArray:
    return _apply(_rsi, period, x)


def macd(x: FloatArray, fast: int = 12, slow: int = 26) -> FloatArray:
    f, s = _int(fast, "fast"), _int(slow, "slow")
    if f >= s:
        raise ValueError(f"macd needs fast < slow, got fast={f}, slow={s}")
    return _from_first_valid(lambda v: _macd(v, f, s), _series(x))


def macd_signal(x: FloatArray, fast: int = 12, slow: int = 26, signal: int = 9) -> FloatArray:
    g = _int(signal, "signal")
    return _from_first_valid(lambda v: _ema(v, g), macd(x, fast, slow))


def _band(x: FloatArray, period: int, k: float, sign: float) -> FloatArray:
    width = sign * _number(k, "k")

    def core(v: FloatArray, n: int) -> FloatArray:
        mean, var = _mean_var(v, n)
        mean += np.multiply(np.sqrt(var, out=var), width, out=var)
        return mean

    return _apply(core, period, x)


def bbands_upper(x: FloatArray, period: int = 20, k: float = 2.0) -> FloatArray:
    return _band(x, period, k, 1.0)


def bbands_lower(x: FloatArray, period: int = 20, k: float = 2.0) -> FloatArray:
    return _band(x, period, k, -1.0)


def atr(high: FloatArray, low: FloatArray, close: FloatArray, period: int = 14) -> FloatArray:
    return _apply(_atr, period, high, low, close)


def stdev(x: FloatArray, period: int) -> FloatArray:
    return _apply(lambda v, n: np.sqrt(_mean_var(v, n)[1]), period, x)


def highest(x: FloatArray, period: int) -> FloatArray:
    return _apply(lambda v, n: _window_extreme(v, n, np.maximum, -np.inf), period, x)


def lowest(x: FloatArray, period: int) -> FloatArray:
    return _apply(lambda v, n: _window_extreme(v, n, np.minimum, np.inf), period, x)


def roc(x: FloatArray, period: int) -> FloatArray:
    return _apply(_roc, period, x)


def shift(x: FloatArray, n: int) -> FloatArray:
    bars, x = _int(n, "n", minimum=None), _series(x)
    if bars < 0:
        raise ValueError(f"shift by {bars} bars would look ahead; n must be >= 0")
    out = np.full(x.size, np.nan)
    if bars < x.size:
        out[bars:] = x[: x.size - bars]
    return out


def _pair(a: SeriesOrNumber, b: SeriesOrNumber) -> tuple[FloatArray, FloatArray]:
    """Both arguments as equal-length series; a number is broadcast to the other's length."""
    if (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
            == np.float64 and a.ndim == b.ndim == 1 and a.size == b.size):
        return a, b   # two series already (the usual case): nothing to check or broadcast
    if np.ndim(a) == 0 and np.ndim(b) == 0:
        raise ValueError("at least one argument must be a series")
    # A number may be NaN or infinite like any bar of a series (1 / 0 in a rule is inf).
    a, b = (_number(v, name, finite=False) if np.ndim(v) == 0 else _series(v)
            for v, name in ((a, "a"), (b, "b")))
    if np.ndim(a) and np.ndim(b) and a.size != b.size:
        raise ValueError(f"series lengths differ: {a.size} and {b.size}")
    return tuple(np.broadcast_arrays(a, b))


def crossover(a: SeriesOrNumber, b: SeriesOrNumber) -> BoolArray:
    a, b = _pair(a, b)
    out = np.empty(a.size, dtype=bool)
    out[:1] = False
    # Strictly below before, strictly above now: TradingView's ta.crossover and backtesting.py's
    # lib.crossover, so a touch followed by a move away is not a cross.
    now = np.greater(a[1:], b[1:], out=out[1:])   # comparisons with NaN are False
    np.logical_and(now, np.less(a[:-1], b[:-1]), out=now)
    return out


def crossunder(a: SeriesOrNumber, b: SeriesOrNumber) -> BoolArray:
    return crossover(b, a)  # a < b now and a > b before is b crossing over a


def abs_(x: FloatArray) -> FloatArray:
    return np.abs(_series(x))


def minimum(a: SeriesOrNumber, b: SeriesOrNumber) -> FloatArray:
    return np.minimum(*_pair(a, b))


def maximum(a: SeriesOrNumber, b: SeriesOrNumber) -> FloatArray:
    return np.maximum(*_pair(a, b))


# --- registry for the strategy compiler ------------------------------------------------------

@dataclass(frozen=True)
class FunctionSpec:
    """How the strategy compiler calls one function of the language."""

    name: str  # name in the language
    func: Callable[..., np.ndarray]
    series_args: int  # leading series arguments given explicitly by the user
    implicit_series: tuple[str, ...]  # bar fields passed before the user's arguments
    periods: tuple[str, ...]  # names of the trailing constant parameters
    defaults: tuple[int | float, ...]  # defaults of the LAST len(defaults) of periods
    returns_bool: bool
    accepts_scalars: bool  # series arguments may be numbers (crossover, min, max)
    doc: str  # one line for users
    float_params: frozenset[str] = frozenset()  # periods that may be floats; the rest are ints


def _spec(name: str, func: Callable[..., np.ndarray], doc: str, *, series_args: int = 1,
          implicit: tuple[str, ...] = (), returns_bool: bool = False,
          scalars: bool = False) -> FunctionSpec:
    # Parameters, defaults and float-ness come from the signature: one source of truth.
    params = list(inspect.signature(func).parameters.values())[len(implicit) + series_args:]
    return FunctionSpec(
        name=name, func=func, series_args=series_args, implicit_series=implicit,
        periods=tuple(p.name for p in params),
        defaults=tuple(p.default for p in params if p.default is not p.empty),
        returns_bool=returns_bool, accepts_scalars=scalars, doc=doc,
        float_params=frozenset(p.name for p in params if p.annotation in (float, "float")))


FUNCTIONS: dict[str, FunctionSpec] = {spec.name: spec for spec in (
    _spec("sma", sma, "Simple moving average of the last `period` bars."),
    _spec("ema", ema, "Exponential moving average, alpha 2/(period+1), seeded with the SMA."),
    _spec("wma", wma, "Linearly weighted moving average, newest bar weighs `period`."),
    _spec("rsi", rsi, "Wilder's relative strength index, 0..100 (default period 14)."),
    _spec("macd", macd, "MACD line: EMA(fast) - EMA(slow) (defaults 12, 26)."),
    _spec("macd_signal", macd_signal, "EMA(signal) of the MACD line (defaults 12, 26, 9)."),
    _spec("bbands_upper", bbands_upper, "Upper Bollinger band: SMA + k * stdev (20, 2)."),
    _spec("bbands_lower", bbands_lower, "Lower Bollinger band: SMA - k * stdev (20, 2)."),
    _spec("atr", atr, "Wilder's average true range of the bars (default period 14).",
          series_args=0, implicit=("high", "low", "close")),
    _spec("stdev", stdev, "Population standard deviation of the last `period` bars."),
    _spec("highest", highest, "Highest value of the last `period` bars, current included."),
    _spec("lowest", lowest, "Lowest value of the last `period` bars, current included."),
    _spec("roc", roc, "Rate of change in percent over `period` bars."),
    _spec("crossover", crossover, "True on the bar where a crosses above b.",
          series_args=2, returns_bool=True, scalars=True),
    _spec("crossunder", crossunder, "True on the bar where a crosses below b.",
          series_args=2, returns_bool=True, scalars=True),
    _spec("shift", shift, "The series delayed by n bars (n >= 0): shift(close, 1) is the "
          "previous close."),
    _spec("abs", abs_, "Absolute value, bar by bar."),
    _spec("min", minimum, "Smaller of a and b, bar by bar.", series_args=2, scalars=True),
    _spec("max", maximum, "Larger of a and b, bar by bar.", series_args=2, scalars=True),
)}
