"""tradeloop's backtests side by side with backtesting.py and vectorbt, and the backtest API.

    python bench/backtest.py [--quick] [--json PATH] [--only 1,2,...]

Rows (bench/README.md explains each and holds the latest full table):
  1. one SmaCross(10, 30) run on backtesting.py's GOOG data, vs backtesting.py
  2. a 100-pair (fast, slow) sweep ranked by Sharpe, warm, vs vectorbt
  3. the same sweep as a fresh process including imports, vs vectorbt (numba cache warm/cold)
  4. one backtest over 1,000,000 synthetic bars
  5. GET /api/v1/backtest/results (first page, ?symbol=, a deep ?before= cursor page) and
     the cache-key lookup on 100,000 stored runs (SQLite and PostgreSQL), through a real
     uvicorn server

Every figure is the median of several runs (p50/p95 for the API); the machine is shared, so
the ratios matter more than the absolute times. `--quick` is a smoke run for CI (fewer
repetitions, 10,000 runs in the API tables). No network; PostgreSQL is the local server of
BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/tradeloop_bench),
whose database is created and dropped by this script.

Top-level imports are the standard library only: the script runs itself as the child
processes of row 3 (whose import time is what is measured) and as the API server of row 5.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/tradeloop_bench"

# The strategy of rows 1-4: long on a cross up, short on a cross down, always in the market.
SMA_CROSS = """\
name: SMA cross
symbols: [GOOG]
params: {{fast: {fast}, slow: {slow}}}
indicators:
  fast_ma: sma(close, fast)
  slow_ma: sma(close, slow)
entry: {{long: crossover(fast_ma, slow_ma), short: crossunder(fast_ma, slow_ma)}}
"""
# 10 x 10 = 100 pairs, 20 distinct moving averages, fast < slow everywhere.
FAST = tuple(range(5, 55, 5))
SLOW = tuple(range(60, 260, 20))
PAIRS = tuple((fast, slow) for fast in FAST for slow in SLOW)
CASH = 10_000.0


@dataclass
class Config:
    quick: bool
    single_rounds: int        # row 1: rounds of 4 tradeloop runs and 1 backtesting.py run
    sweep_rounds: int         # row 2: rounds of one tradeloop and one vectorbt sweep
    full_metrics_reps: int    # row 2, the sweep with every metric of every run
    fresh_reps: int           # row 3, tradeloop and vectorbt (warm cache), alternating
    cold_reps: int            # row 3, vectorbt with an empty numba cache (~45 s each)
    big_reps: int             # row 4
    api_runs: int             # row 5, stored runs per database
    api_requests: int         # row 5, timed requests / lookups after the warm-up
    api_warmup: int
    api_slow_requests: int    # row 5, the informational slow pages

    @classmethod
    def make(cls, quick: bool) -> Config:
        if quick:
            return cls(True, 3, 3, 1, 1, 1, 2, 10_000, 100, 10, 3)
        return cls(False, 50, 15, 3, 3, 1, 7, 100_000, 300, 30, 5)


@dataclass
class Row:
    item: str
    what: str
    tradeloop: str
    peer: str = ""
    ratio: str = ""
    goal: str = ""
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.rows.append(Row(*args, **kwargs))
        row = self.rows[-1]
        print(f"  {row.item:<3} {row.what}: {row.tradeloop}"
              + (f" | peer {row.peer}" if row.peer else "")
              + (f" | {row.ratio}" if row.ratio else "")
              + ("" if row.met is None
                 else f" | goal {row.goal}: {'met' if row.met else 'MISSED'}"), flush=True)


# --- timing helpers ------------------------------------------------------------------------


def timings(fn: Callable[[], object], reps: int, warmup: int = 1) -> list[float]:
    """Seconds per call of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def interleaved(calls: dict[str, tuple[Callable[[], object], int]], rounds: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, taken in alternation: each round calls every
    function its given number of times, so that the load of the (shared) machine weighs on
    all of them alike."""
    for fn, _ in calls.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, (fn, per_round) in calls.items():
            for _ in range(per_round):
                start = time.perf_counter()
                fn()
                out[name].append(time.perf_counter() - start)
    return out


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float) -> str:
    value = seconds * 1000
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def wall(seconds: float) -> str:
    return f"{seconds:.2f} s"


def speedup(ours: float, theirs: float) -> str:
    """How many times faster (or slower) tradeloop's time `ours` is than `theirs`."""
    factor = theirs / ours
    if factor >= 1:
        return f"{factor:.1f}x faster" if factor < 20 else f"{factor:.0f}x faster"
    return f"{1 / factor:.1f}x slower"


# --- data ------------------------------------------------------------------------------------


def goog() -> Any:
    from backtesting.test import GOOG

    return GOOG


def goog_arrays() -> tuple[dict[str, Any], Any]:
    """GOOG as the compiler's column mapping and as the engine's SymbolBars."""
    import numpy as np

    from tradeloop.backtest.engine import SymbolBars

    df = goog()
    columns = {c.lower(): df[c].to_numpy(np.float64)
               for c in ("Open", "High", "Low", "Close", "Volume")}
    bars = SymbolBars("GOOG", df.index.values.astype("datetime64[ns]"), columns["open"],
                      columns["high"], columns["low"], columns["close"])
    return columns, bars


def tradeloop_sweep(definition: Any, columns: dict[str, Any], bars: Any) -> list[float | None]:
    """Sharpe ratio of every pair: compile with the pair's params, evaluate the signals,
    run the engine, then rank with the sweep's metric (metrics.ranking.rank_values, equal to
    compute_metrics' sharpe_ratio)."""
    from tradeloop.backtest.engine import BacktestOptions, run_backtest
    from tradeloop.backtest.metrics.ranking import rank_values
    from tradeloop.strategies.compiler import compile_strategy

    options = BacktestOptions(cash=CASH)
    outputs = []
    for fast, slow in PAIRS:
        compiled = compile_strategy(definition, {"fast": fast, "slow": slow})
        outputs.append(run_backtest([(bars, compiled.evaluate(columns))], compiled.risk,
                                    options))
    return rank_values(outputs, "sharpe_ratio")


def vectorbt_sweep(close: Any, opening: Any) -> Any:
    """The same 100 runs in vectorbt: a signal at a bar's close fills at the next bar's open
    (signals shifted by one bar, price = open), all the cash in whole units, long/short with
    reversals (entries + short_entries), no costs. Its equity equals tradeloop's to 1e-14."""
    import numpy as np
    import vectorbt as vbt

    fast = vbt.MA.run(close, [f for f, _ in PAIRS], short_name="fast")
    slow = vbt.MA.run(close, [s for _, s in PAIRS], short_name="slow")
    entries = fast.ma_crossed_above(slow).shift(1, fill_value=False)
    short_entries = fast.ma_crossed_below(slow).shift(1, fill_value=False)
    portfolio = vbt.Portfolio.from_signals(
        close, entries=entries, short_entries=short_entries, price=opening, init_cash=CASH,
        size=np.inf, size_granularity=1, freq="1D")
    return portfolio, portfolio.sharpe_ratio()


# --- row 1: one run against backtesting.py -------------------------------------------------


def bench_single(cfg: Config, report: Report) -> None:
    import warnings

    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover
    from backtesting.test import SMA

    from tradeloop.backtest.engine import BacktestOptions, run_backtest
    from tradeloop.backtest.metrics import compute_metrics
    from tradeloop.strategies.compiler import compile_strategy
    from tradeloop.strategies.definition import parse_definition

    class SmaCross(Strategy):  # backtesting.py's documented example
        n1, n2 = 10, 30

        def init(self) -> None:
            self.sma1 = self.I(SMA, self.data.Close, self.n1)
            self.sma2 = self.I(SMA, self.data.Close, self.n2)

        def next(self) -> None:
            if crossover(self.sma1, self.sma2):
                self.position.close()
                self.buy()
            elif crossover(self.sma2, self.sma1):
                self.position.close()
                self.sell()

    start = time.perf_counter()
    compiled = compile_strategy(parse_definition(SMA_CROSS.format(fast=10, slow=30)))
    compile_s = time.perf_counter() - start
    columns, bars = goog_arrays()
    options = BacktestOptions(cash=CASH)
    data = goog()

    def ours() -> dict[str, Any]:
        signals = compiled.evaluate(columns)
        return compute_metrics(run_backtest([(bars, signals)], compiled.risk, options))

    def engine_only() -> object:
        return run_backtest([(bars, compiled.evaluate(columns))], compiled.risk, options)

    def theirs() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Backtest(data, SmaCross, cash=CASH, commission=0,
                            finalize_trades=True).run()

    times = interleaved({"ours": (ours, 4), "engine": (engine_only, 4), "theirs": (theirs, 1)},
                        cfg.single_rounds, warmup=2)
    t_ours, t_engine, t_theirs = (median(times[k]) for k in ("ours", "engine", "theirs"))
    metrics, stats = ours(), theirs()
    report.add("1", "SmaCross(10,30) on GOOG, one run: signals + engine + compute_metrics",
               ms(t_ours), ms(t_theirs), speedup(t_ours, t_theirs),
               "≤ 1/30 of backtesting.py", t_ours * 30 <= t_theirs)
    report.add("1a", "  of which signals + engine (no metrics)", ms(t_engine), ms(t_theirs),
               speedup(t_engine, t_theirs))
    ours_sharpe = metrics["risk_adjusted"]["sharpe_ratio"]
    report.notes.append(
        f"Row 1 check: tradeloop {metrics['trades']['num_trades']} trades, return "
        f"{metrics['returns']['return_pct']:.4f} %, Sharpe {ours_sharpe:.10f}; backtesting.py "
        f"{stats['# Trades']} trades, return {stats['Return [%]']:.4f} %, "
        f"Sharpe {stats['Sharpe Ratio']:.10f}. Parse + compile (once, not in the row): "
        f"{ms(compile_s)}.")
    report.data["single"] = {"tradeloop_s": t_ours, "tradeloop_engine_s": t_engine,
                             "backtesting_s": t_theirs, "compile_s": compile_s,
                             "sharpe": [ours_sharpe, float(stats["Sharpe Ratio"])]}


# --- row 2: the sweep, warm ------------------------------------------------------------------


def bench_sweep(cfg: Config, report: Report) -> None:
    import numpy as np

    from tradeloop.backtest.engine import BacktestOptions, run_backtest
    from tradeloop.backtest.metrics import compute_metrics
    from tradeloop.strategies.compiler import compile_strategy
    from tradeloop.strategies.definition import parse_definition

    definition = parse_definition(SMA_CROSS.format(fast=10, slow=30))
    columns, bars = goog_arrays()
    close, opening = goog().Close, goog().Open
    start = time.perf_counter()
    vectorbt_sweep(close, opening)  # JIT compile or load from the numba cache
    first_call = time.perf_counter() - start

    times = interleaved({"ours": (lambda: tradeloop_sweep(definition, columns, bars), 1),
                         "theirs": (lambda: vectorbt_sweep(close, opening), 1)},
                        cfg.sweep_rounds, warmup=2)
    t_ours, t_theirs = median(times["ours"]), median(times["theirs"])

    def with_every_metric() -> list[Any]:
        options = BacktestOptions(cash=CASH)
        return [compute_metrics(run_backtest(
            [(bars, compile_strategy(definition, {"fast": f, "slow": s}).evaluate(columns))],
            definition.risk, options))["risk_adjusted"]["sharpe_ratio"] for f, s in PAIRS]

    t_full = median(timings(with_every_metric, cfg.full_metrics_reps, warmup=0))
    same = sum(a == b for a, b in zip(with_every_metric(),
                                      tradeloop_sweep(definition, columns, bars), strict=True))
    report.add("2", "100-pair sweep on GOOG, warm, Sharpe of every run", ms(t_ours),
               ms(t_theirs), speedup(t_ours, t_theirs), "≤ vectorbt",
               t_ours <= t_theirs)
    report.add("2a", "  same sweep, every metric of every run (compute_metrics x 100)",
               ms(t_full), ms(t_theirs), speedup(t_full, t_theirs))

    # Same trades and equity as vectorbt's; the two Sharpe definitions differ (theirs is the
    # arithmetic daily mean / std x sqrt(365)), so compare the rankings.
    ours_sharpe = np.array(tradeloop_sweep(definition, columns, bars), dtype=float)
    portfolio, their_sharpe = vectorbt_sweep(close, opening)
    their_values = portfolio.value().to_numpy()
    options = BacktestOptions(cash=CASH)
    our_values = np.column_stack([run_backtest(
        [(bars, compile_strategy(definition, {"fast": f, "slow": s}).evaluate(columns))],
        definition.risk, options).equity for f, s in PAIRS])
    equity_diff = float(np.max(np.abs(their_values / our_values - 1)))
    ranks = np.corrcoef(np.argsort(np.argsort(ours_sharpe)),
                        np.argsort(np.argsort(their_sharpe.to_numpy())))[0, 1]
    best = PAIRS[int(np.nanargmax(ours_sharpe))]
    report.notes.append(
        f"Row 2 check: vectorbt's equity curves equal tradeloop's for all 100 pairs (largest "
        f"relative difference {equity_diff:.1e}); Sharpe rank correlation {ranks:.3f} "
        f"(different Sharpe definitions); best pair by tradeloop's Sharpe {best}; the sweep's "
        f"rank_values equals compute_metrics' sharpe_ratio exactly for {same}/100 "
        f"pairs. vectorbt's "
        f"first call in this process (numba cache load / compile): {wall(first_call)}.")
    report.data["sweep"] = {"tradeloop_s": t_ours, "vectorbt_s": t_theirs,
                            "tradeloop_every_metric_s": t_full, "equity_max_rel_diff":
                            equity_diff, "sharpe_rank_correlation": float(ranks),
                            "vectorbt_first_call_s": first_call, "sharpe_identical": same}


# --- row 3: the sweep as a fresh process -------------------------------------------------------


def child_tradeloop(data_path: str) -> None:
    """Child process of row 3: imports, loads the bars, runs the sweep, prints JSON."""
    start = time.perf_counter()
    import numpy as np

    from tradeloop.backtest.engine import SymbolBars
    from tradeloop.strategies.definition import parse_definition
    imported = time.perf_counter()
    data = np.load(data_path)
    columns = {name: data[name] for name in ("open", "high", "low", "close", "volume")}
    bars = SymbolBars("GOOG", data["ts"], columns["open"], columns["high"], columns["low"],
                      columns["close"])
    sharpe = tradeloop_sweep(parse_definition(SMA_CROSS.format(fast=10, slow=30)), columns,
                             bars)
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "run_s": done - imported,
                      "best": max(s for s in sharpe if s is not None)}))


def child_vectorbt(data_path: str) -> None:
    start = time.perf_counter()
    import numpy as np
    import pandas as pd
    import vectorbt  # noqa: F401  (its import is part of the measured time)
    imported = time.perf_counter()
    data = np.load(data_path)
    index = pd.DatetimeIndex(data["ts"])
    _, sharpe = vectorbt_sweep(pd.Series(data["close"], index=index),
                               pd.Series(data["open"], index=index))
    done = time.perf_counter()
    print(json.dumps({"import_s": imported - start, "run_s": done - imported,
                      "best": float(sharpe.max())}))


def run_child(args: list[str], env: dict[str, str] | None = None,
              python_flags: tuple[str, ...] = ()) -> tuple[float, dict[str, Any], str]:
    """Wall time of `python bench/backtest.py --child ...`, its JSON line and its stderr."""
    start = time.perf_counter()
    done = subprocess.run(  # noqa: S603 (our own interpreter and script)
        [sys.executable, *python_flags, str(Path(__file__).resolve()), "--child", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=240,
        check=False)
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return elapsed, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def import_breakdown(stderr: str, roots: tuple[str, ...]) -> dict[str, float]:
    """Cumulative seconds of each module in `roots` from `python -X importtime` output
    (its first import, where it is paid)."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] in roots and parts[1].isdigit():
            found.setdefault(parts[2], int(parts[1]) / 1e6)
    return found


def bench_fresh(cfg: Config, report: Report, workdir: Path, numba_cache: Path) -> None:
    import numpy as np

    df = goog()
    data_path = workdir / "goog.npz"
    np.savez(data_path, ts=df.index.values.astype("datetime64[ns]"),
             **{c.lower(): df[c].to_numpy(np.float64)
                for c in ("Open", "High", "Low", "Close", "Volume")})
    cache_env = {"NUMBA_CACHE_DIR": str(numba_cache)}
    cold = []
    for attempt in range(cfg.cold_reps):  # an empty cache each time; the last one stays
        shutil.rmtree(numba_cache, ignore_errors=True)
        numba_cache.mkdir(parents=True)
        print(f"    vectorbt, cold numba cache ({attempt + 1}/{cfg.cold_reps}) ...", flush=True)
        cold.append(run_child(["vectorbt", str(data_path)], cache_env)[0])
    warm, ours = [], []
    for _ in range(cfg.fresh_reps):  # alternating, like the in-process rows
        warm.append(run_child(["vectorbt", str(data_path)], cache_env))
        ours.append(run_child(["tradeloop", str(data_path)]))
    _, _, trace = run_child(["tradeloop", str(data_path)], python_flags=("-X", "importtime"))
    t_ours, t_warm, t_cold = (median([w for w, *_ in ours]), median([w for w, *_ in warm]),
                              median(cold))
    split = {name: median([info[name] for _, info, _ in ours]) for name in ("import_s", "run_s")}
    vbt_split = {name: median([info[name] for _, info, _ in warm])
                 for name in ("import_s", "run_s")}
    report.add("3", "same sweep, fresh process incl. imports (wall), vs vectorbt warm cache",
               wall(t_ours), wall(t_warm), speedup(t_ours, t_warm),
               "≤ 1/5 of vectorbt warm", t_ours * 5 <= t_warm)
    report.add("3a", "  vs vectorbt with a cold numba cache", wall(t_ours), wall(t_cold),
               speedup(t_ours, t_cold))
    roots = ("numpy", "pandas", "scipy.signal", "yaml", "tradeloop.strategies.definition",
             "tradeloop.strategies.compiler", "tradeloop.backtest.engine")
    breakdown = import_breakdown(trace, roots)
    report.notes.append(
        f"Row 3 split (medians): tradeloop imports {wall(split['import_s'])} + sweep "
        f"{wall(split['run_s'])}; vectorbt imports {wall(vbt_split['import_s'])} + sweep "
        f"{wall(vbt_split['run_s'])} (numba cache loads and the functions it does not cache). "
        "tradeloop's import time by module (python -X importtime, cumulative, first import; "
        "importtime adds overhead): "
        + ", ".join(f"{name} {wall(seconds)}" for name, seconds in breakdown.items()) + ".")
    report.data["fresh"] = {"tradeloop_s": t_ours, "vectorbt_warm_s": t_warm,
                            "vectorbt_cold_s": t_cold, "tradeloop_split": split,
                            "vectorbt_split": vbt_split, "tradeloop_imports": breakdown,
                            "cold_runs": len(cold)}


# --- row 4: a million bars -------------------------------------------------------------------


def bench_big(cfg: Config, report: Report) -> None:
    import numpy as np

    from tradeloop.backtest.engine import BacktestOptions, SymbolBars, run_backtest
    from tradeloop.backtest.metrics import compute_metrics
    from tradeloop.strategies.compiler import compile_strategy
    from tradeloop.strategies.definition import parse_definition

    n = 1_000_000
    rng = np.random.default_rng(20240601)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    opening = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.0003, n))
    high = np.maximum(opening, close) * (1 + np.abs(rng.normal(0, 0.0005, n)))
    low = np.minimum(opening, close) * (1 - np.abs(rng.normal(0, 0.0005, n)))
    ts = np.datetime64("2020-01-01", "ns") + np.arange(n) * np.timedelta64(1, "m")
    columns = {"open": opening, "high": high, "low": low, "close": close,
               "volume": np.ones(n)}
    bars = SymbolBars("SYN", ts, opening, high, low, close)
    compiled = compile_strategy(parse_definition(SMA_CROSS.format(fast=50, slow=200)))
    options = BacktestOptions(cash=CASH)

    def run() -> Any:
        return run_backtest([(bars, compiled.evaluate(columns))], compiled.risk, options)

    t_run = median(timings(run, cfg.big_reps))
    t_metrics = median(timings(lambda: compute_metrics(run()), cfg.big_reps))
    signals = compiled.evaluate(columns)
    t_signals = median(timings(lambda: compiled.evaluate(columns), cfg.big_reps))
    t_engine = median(timings(lambda: run_backtest([(bars, signals)], compiled.risk, options),
                              cfg.big_reps))
    output = run()
    trades = len(output.trades)
    t_only_metrics = median(timings(lambda: compute_metrics(output), cfg.big_reps))
    report.add("4", "1,000,000 bars, SMA 50/200 long/short: signals + engine", ms(t_run),
               goal="< 100 ms", met=t_run < 100e-3)
    report.add("4a", "  signals + engine + compute_metrics", ms(t_metrics), goal="< 100 ms",
               met=t_metrics < 100e-3)
    report.notes.append(
        f"Row 4: {trades:,} trades on 1-minute random-walk bars; signals alone "
        f"{ms(t_signals)}, engine alone {ms(t_engine)}, compute_metrics alone "
        f"{ms(t_only_metrics)}.")
    report.data["big"] = {"signals_engine_s": t_run, "with_metrics_s": t_metrics,
                          "signals_s": t_signals, "engine_s": t_engine,
                          "metrics_s": t_only_metrics, "trades": trades}


# --- row 5: the API over 100,000 stored runs ------------------------------------------------


SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "SPY", "QQQ", "BTC-USD")


def seed_runs(url: str, count: int) -> dict[str, Any]:
    """One user with an API token, 10 strategies, `count` runs (95 % done with a result row,
    3 % failed, 2 % queued) spread over a year, bulk-inserted with Core executemany."""
    import hashlib
    import random
    import uuid
    import zlib
    from datetime import UTC, datetime, timedelta

    import numpy as np
    from sqlalchemy import DateTime, Float, Integer, insert

    from tradeloop.accounts import service as accounts
    from tradeloop.accounts.models import TokenContext
    from tradeloop.backtest.models import BacktestResult, BacktestRun, BacktestRunSymbol
    from tradeloop.backtest.service import Cursor
    from tradeloop.db import Database
    from tradeloop.strategies.models import Strategy

    rng = random.Random(7)  # noqa: S311 (plausible data, not secrets)
    db = Database.from_url(url)
    with db.unit_of_work() as session:
        user = accounts.create_user(session=session, email="bench@example.com",
                                    password="bench password 123")  # noqa: S106
        token = accounts.issue_token(session=session, user=user, context=TokenContext.API)
        user_id = user.id
    now = datetime.now(UTC)
    strategies = []
    for k in range(10):
        text = SMA_CROSS.format(fast=10 + k, slow=30 + k).replace("SMA cross", f"SMA cross {k}")
        strategies.append({"id": uuid.uuid4(), "user_id": user_id, "name": f"SMA cross {k}",
                           "version": 1, "status": "draft", "definition": text,
                           "metadata": {}, "lock_version": 1, "inserted_at": now,
                           "updated_at": now})
    # A 100-point equity curve per result (real ones are longer; they are stored compressed).
    curve = 10_000 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 0.01, 100)))
    stamps = (np.datetime64("2020-01-01", "ns") + np.arange(100) * np.timedelta64(1, "D"))
    equity_ts = zlib.compress(stamps.astype(np.int64).tobytes(), level=1)
    equity_values = zlib.compress(curve.tobytes(), level=1)
    # Every metric column gets a value of its type (the table, not the metric registry, says
    # which: this script uses no metrics name beyond compute_metrics and rank_values).
    metric_columns = [c for c in BacktestResult.__table__.columns
                      if c.name not in ("run_id", "equity_ts", "equity_values", "created_at")]
    int_names = [c.name for c in metric_columns if isinstance(c.type, Integer)]
    float_names = [c.name for c in metric_columns if isinstance(c.type, Float)]
    time_names = [c.name for c in metric_columns
                  if isinstance(getattr(c.type, "impl", c.type), DateTime)]
    fixed_times = dict.fromkeys(time_names, datetime(2015, 1, 2, tzinfo=UTC))
    values = np.random.default_rng(11)
    started = time.perf_counter()
    keys: list[str] = []
    deep_cursor = ""
    with db.engine.begin() as connection:
        connection.execute(insert(Strategy.__table__), strategies)
        chunk = 5_000
        for first in range(0, count, chunk):
            runs, results, run_symbols = [], [], []
            floats = iter(values.normal(0, 20, (chunk, len(float_names))).tolist())
            ints = iter(values.integers(0, 500, (chunk, len(int_names))).tolist())
            for i in range(first, min(first + chunk, count)):
                strategy = strategies[i % 10]
                inserted = now - timedelta(seconds=(count - i) * 315.36 + rng.random())
                status = "done" if i % 100 < 95 else ("failed" if i % 100 < 98 else "queued")
                key = hashlib.sha256(f"bench-run-{i}".encode()).hexdigest()
                keys.append(key)
                run_id = uuid.uuid4()
                picked = sorted(rng.sample(SYMBOLS, rng.randint(1, 3)))
                run_symbols += [{"run_id": run_id, "symbol": symbol, "user_id": user_id,
                                 "inserted_at": inserted} for symbol in picked]
                if i == count - 1 - count // 2:  # the last row of the page at offset count / 2
                    deep_cursor = Cursor(inserted, run_id).encode()
                runs.append({
                    "id": run_id, "user_id": user_id, "strategy_id": strategy["id"],
                    "strategy_name": strategy["name"], "strategy_version": 1,
                    "definition": strategy["definition"], "symbols": f",{','.join(picked)},",
                    "timeframe": "1d", "start": datetime(2015, 1, 1, tzinfo=UTC),
                    "end": datetime(2024, 12, 31, tzinfo=UTC),
                    "params": {"fast": rng.randrange(5, 55, 5), "slow": rng.randrange(60, 260, 20)},
                    "cash": CASH, "commission": 0.001, "commission_fixed": 0.0,
                    "slippage_bps": 0.0, "fill": "open", "size_units": "whole",
                    "status": status,
                    "error": "ValueError: no bars in range" if status == "failed" else None,
                    "cache_key": key, "cache_hits": rng.randint(0, 3),
                    "duration_ms": None if status == "queued" else rng.uniform(5, 400),
                    "inserted_at": inserted,
                    "started_at": None if status == "queued" else inserted + timedelta(seconds=1),
                    "finished_at": None if status == "queued" else inserted + timedelta(seconds=2),
                })
                if status == "done":
                    results.append({"run_id": run_id, "equity_ts": equity_ts,
                                    "equity_values": equity_values, "created_at": inserted,
                                    **dict(zip(float_names, next(floats), strict=True)),
                                    **dict(zip(int_names, next(ints), strict=True)),
                                    **fixed_times})
            connection.execute(insert(BacktestRun.__table__), runs)
            connection.execute(insert(BacktestRunSymbol.__table__), run_symbols)
            if results:
                connection.execute(insert(BacktestResult.__table__), results)
    insert_s = time.perf_counter() - started
    if db.engine.dialect.name == "postgresql":  # what autovacuum would do shortly after
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    db.dispose()
    return {"token": token, "user_id": user_id, "keys": keys, "insert_s": insert_s,
            "deep_cursor": deep_cursor}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_serve(url: str, port: str, data_dir: str) -> None:
    """Child process of row 5: the app as `tradeloop serve` builds it (without the
    background scheduler), on uvicorn."""
    import uvicorn
    from pydantic import SecretStr

    from tradeloop.app import create_app
    from tradeloop.db import Database
    from tradeloop.settings import Settings

    settings = Settings(_env_file=None, tradeloop_data_dir=Path(data_dir),  # type: ignore[call-arg]
                        database_url=url, secret_key=SecretStr("bench-secret-key" * 4),
                        webhook_secret=SecretStr("bench-webhook-secret"),
                        celery_broker_url=None, load_demo_on_first_start=False)
    db = Database.from_url(url)
    uvicorn.run(create_app(settings, db), host="127.0.0.1", port=int(port), log_config=None)


@contextlib.contextmanager
def api_server(url: str, workdir: Path) -> Iterator[int]:
    port = free_port()
    log = (workdir / f"server-{port}.log").open("w")
    server = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
        [sys.executable, str(Path(__file__).resolve()), "--child", "serve", url, str(port),
         str(workdir / "data")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the API server exited: see {log.name}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the API server did not start within 60 s")
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def time_list_requests(port: int, token: str, warmup: int, count: int,
                       query: str = "limit=20") -> list[float]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"}
    out = []
    for i in range(warmup + count):
        start = time.perf_counter()
        connection.request("GET", f"/api/v1/backtest/results?{query}", headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"GET results: {response.status} {body[:300]!r}")
        if i == 0 and query == "limit=20" and len(json.loads(body)["results"]) != 20:
            raise RuntimeError("GET results did not return 20 runs")
        if i >= warmup:
            out.append(elapsed)
    connection.close()
    return out


def captured_sql(engine: Any, action: Callable[[], object]) -> tuple[str, Any]:
    """The last statement and parameters `action` sends through `engine`."""
    from sqlalchemy import event

    seen: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        action()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return seen[-1]


def explain(engine: Any, statement: str, parameters: Any) -> list[str]:
    dialect = engine.dialect.name
    prefix = "EXPLAIN QUERY PLAN " if dialect == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(prefix + statement, parameters).fetchall()
    if dialect == "sqlite":
        return [str(row[-1]) for row in rows]
    return [str(row[0]) for row in rows]


def time_lookups(url: str, keys: list[str], warmup: int, count: int
                 ) -> tuple[list[float], dict[str, list[str]]]:
    """The cache-key lookup as submit_run does it, on an open session; plus the EXPLAIN of
    it and of the list query, captured from the service."""
    import random
    import uuid

    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from tradeloop.backtest import service
    from tradeloop.backtest.models import BacktestRun
    from tradeloop.db import create_db_engine

    engine = create_db_engine(url)
    rng = random.Random(3)  # noqa: S311
    sample = [rng.choice(keys) for _ in range(warmup + count)]
    out = []
    with Session(engine) as session:
        for i, key in enumerate(sample):
            start = time.perf_counter()
            run = session.scalars(select(BacktestRun).where(BacktestRun.cache_key == key)).first()
            elapsed = time.perf_counter() - start
            if run is None or run.cache_key != key:
                raise RuntimeError("cache key lookup found nothing")
            session.expunge_all()
            if i >= warmup:
                out.append(elapsed)
        owner = session.scalars(select(BacktestRun.user_id).limit(1)).one()
        lookup_sql = captured_sql(engine, lambda: session.scalars(
            select(BacktestRun).where(BacktestRun.cache_key == sample[0])).first())
        list_sql = captured_sql(engine, lambda: service.list_runs(
            session=session, owner_id=uuid.UUID(str(owner)), limit=20, offset=0))
        symbol_sql = captured_sql(engine, lambda: service.list_runs(
            session=session, owner_id=uuid.UUID(str(owner)), limit=20, symbol="AAPL"))
    plans = {"list": explain(engine, *list_sql), "lookup": explain(engine, *lookup_sql),
             "symbol": explain(engine, *symbol_sql)}
    engine.dispose()
    return out, plans


def plan_summary(lines: list[str]) -> str:
    """The plan's nodes on one line, without PostgreSQL's cost and buffer details."""
    nodes = []
    for line in lines:
        text = line.strip().removeprefix("->").strip()
        if not text or text.startswith(("Buffers:", "Planning", "Execution", "Worker",
                                        "Full-sort", "Sort Method", "Output")):
            continue
        nodes.append(text.split("  (cost=")[0])
    return " > ".join(nodes)


def reset_postgres(url: str, *, drop_only: bool = False) -> None:
    """Drop (and recreate) the database named in `url`."""
    from tradeloop import migrate

    migrate.recreate_postgres_database(url, drop_only=drop_only)


def bench_api(cfg: Config, report: Report, workdir: Path, pg_url: str) -> None:
    from tradeloop import migrate
    from tradeloop.logs import configure_logging

    configure_logging("WARNING", "json")  # no per-user log lines while seeding
    backends = {"SQLite": f"sqlite:///{workdir / 'bench.db'}", "PostgreSQL": pg_url}
    report.data["api"] = {}
    for label, url in backends.items():
        if label == "PostgreSQL":
            reset_postgres(url)
        try:
            migrate.upgrade(url)
            print(f"    {label}: inserting {cfg.api_runs:,} runs ...", flush=True)
            seeded = seed_runs(url, cfg.api_runs)
            with api_server(url, workdir) as port:
                requests = time_list_requests(port, seeded["token"], cfg.api_warmup,
                                              cfg.api_requests)
                # The symbol filter (from backtest_run_symbols' index) and a deep page by
                # cursor: the same goal as the first page.
                by_symbol = time_list_requests(port, seeded["token"], cfg.api_warmup,
                                               cfg.api_requests, "limit=20&symbol=AAPL")
                absent = time_list_requests(port, seeded["token"], cfg.api_warmup,
                                            cfg.api_requests, "limit=20&symbol=ZZZZ")
                keyset = time_list_requests(port, seeded["token"], cfg.api_warmup,
                                            cfg.api_requests,
                                            f"limit=20&before={seeded['deep_cursor']}")
                # The same deep page by offset, which no index serves (informational).
                deep = time_list_requests(port, seeded["token"], 1, cfg.api_slow_requests,
                                          f"limit=20&offset={cfg.api_runs // 2}")
            lookups, plans = time_lookups(url, seeded["keys"], cfg.api_warmup, cfg.api_requests)
        finally:
            if label == "PostgreSQL":
                reset_postgres(url, drop_only=True)
        p50, p95 = percentile(requests, 50), percentile(requests, 95)
        l50, l95 = percentile(lookups, 50), percentile(lookups, 95)
        report.add("5", f"{label}, {cfg.api_runs:,} runs: GET /backtest/results?limit=20 "
                   "p50 / p95", f"{ms(p50)} / {ms(p95)}", goal="p95 < 20 ms", met=p95 < 20e-3)
        report.add("5", f"{label}: cache-key lookup p50 / p95", f"{ms(l50)} / {ms(l95)}",
                   goal="< 5 ms", met=l95 < 5e-3)
        for query, times in (("?symbol=AAPL (in ~20 % of runs)", by_symbol),
                             ("?symbol= a symbol no run has", absent),
                             (f"?before= cursor {cfg.api_runs // 2:,} rows deep", keyset)):
            q50, q95 = percentile(times, 50), percentile(times, 95)
            report.add("5", f"  {label}: {query} p50 / p95", f"{ms(q50)} / {ms(q95)}",
                       goal="p95 < 20 ms", met=q95 < 20e-3)
        report.add("5i", f"  {label}: ?offset={cfg.api_runs // 2:,} (deep page by offset), p50",
                   ms(median(deep)))
        report.notes.append(
            f"Row 5 {label}: {cfg.api_runs:,} runs inserted in {wall(seeded['insert_s'])}; "
            f"list plan: {plan_summary(plans['list'])}; ?symbol= plan: "
            f"{plan_summary(plans['symbol'])}; lookup plan: {plan_summary(plans['lookup'])}.")
        report.data["api"][label] = {
            "runs": cfg.api_runs, "insert_s": seeded["insert_s"], "list_p50_s": p50,
            "list_p95_s": p95, "lookup_p50_s": l50, "lookup_p95_s": l95,
            "requests": len(requests), "lookups": len(lookups), "plans": plans,
            "symbol_p50_s": percentile(by_symbol, 50), "symbol_p95_s": percentile(by_symbol, 95),
            "absent_symbol_p50_s": percentile(absent, 50),
            "absent_symbol_p95_s": percentile(absent, 95),
            "keyset_deep_p50_s": percentile(keyset, 50),
            "keyset_deep_p95_s": percentile(keyset, 95), "deep_offset_p50_s": median(deep)}


# --- the table ---------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    return (f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("numpy", "pandas", "backtesting", "vectorbt", "numba", "SQLAlchemy",
                 "psycopg", "uvicorn", "fastapi"):
        with contextlib.suppress(PackageNotFoundError):
            found.append(f"{name} {version(name)}")
    return ", ".join(found)


def table(rows: list[Row]) -> str:
    header = ("#", "measurement", "tradeloop", "peer", "ratio", "goal", "met")
    lines = [header] + [
        (r.item, r.what, r.tradeloop, r.peer, r.ratio, r.goal,
         "" if r.met is None else ("yes" if r.met else "**no**")) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |"
           for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced smoke run for CI")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--only", default="1,2,3,4,5", help="rows to run, e.g. 1,4")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, *rest = args.child
        {"tradeloop": child_tradeloop, "vectorbt": child_vectorbt,
         "serve": child_serve}[name](*rest)
        return 0

    cfg = Config.make(args.quick)
    only = {part.strip() for part in args.only.split(",")}
    pg_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG_URL)
    workdir = Path(tempfile.mkdtemp(prefix="tradeloop-bench-"))
    # One numba cache for row 3's children and this process: row 3 fills it (cold run),
    # after which vectorbt in row 2 starts warm. Never the site-packages __pycache__.
    numba_cache = workdir / "numba"
    os.environ["NUMBA_CACHE_DIR"] = str(numba_cache)
    os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar
    report = Report()
    began = time.perf_counter()
    print(f"tradeloop bench ({'quick' if cfg.quick else 'full'}), {machine()}", flush=True)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("3", lambda: bench_fresh(cfg, report, workdir, numba_cache)),
        ("1", lambda: bench_single(cfg, report)),
        ("2", lambda: bench_sweep(cfg, report)),
        ("4", lambda: bench_big(cfg, report)),
        ("5", lambda: bench_api(cfg, report, workdir, pg_url)),
    ]
    try:
        for item, step in steps:
            if item in only:
                print(f"row {item} ...", flush=True)
                step()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report.rows.sort(key=lambda row: int(row.item[0]))  # stable: sub-rows keep their order
    elapsed = time.perf_counter() - began
    print()
    print(table(report.rows))
    print()
    for note in report.notes:
        print(f"- {note}")
    print(f"\n{'quick' if cfg.quick else 'full'} run, {elapsed:.0f} s; {machine()}; {versions()}")
    if args.json:
        args.json.write_text(json.dumps({
            "quick": cfg.quick, "config": asdict(cfg), "elapsed_s": elapsed,
            "machine": machine(), "versions": versions(),
            "rows": [asdict(row) for row in report.rows], "notes": report.notes,
            "data": report.data}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
