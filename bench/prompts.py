"""Resolve + render of the seeded daily analysis template, cached, next to Jinja2 compiling the
template on every call.

    python bench/prompts.py [--rounds N] [--json PATH]

Setup (not measured): a temporary SQLite file migrated and seeded, 300 daily bars of a
synthetic symbol, and the analysis context built once from them (20 bars, every indicator,
support/resistance, a strategy, market context). Then, each a median over N calls after
warm-up, inside one open unit of work as in a request:

  1. resolve_prompt + ResolvedPrompt.render, cached (the path signal generation takes)
  1a.  of which resolve_prompt alone (the counter read plus the cache lookup)
  1b.  of which render alone (variable checks, the sandboxed, limited render, the log line)
  1c.  render without the "Rendered prompt (N chars) from template: …" INFO log line
  2. jinja2.Environment().from_string(text).render(context): compiling every time, unsandboxed
  2a. the same in an ImmutableSandboxedEnvironment (compile every time, no limits)

Log lines are written as in production (JSON to stderr), to /dev/null here. The machine may
be shared: compare the rows with each other rather than across runs.

Execution-logging overhead per call (`--log-rounds N`, 0 to skip; `--postgresql-url URL` adds
PostgreSQL: a scratch database, migrated to head by the benchmark): `llm.execute` with the
local analyst timed per call, N calls per mode with the modes taking turns — without logging
(DISABLE_PROMPT_LOGGING), with the background writer, inline (the row written before `execute`
returns) — and the overhead is each mode's p50/p95 minus the unlogged one; plus the logging
step alone (what `execute` does after the call: build the row and queue it, or write it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GOAL_US = 100.0


def median_us(function: Callable[[], Any], rounds: int,
              warmup: int = 200) -> tuple[float, float, float]:
    """Median, p95 and minimum of one call, in microseconds (the minimum shows the cost on
    an idle CPU when the machine is shared)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(rounds):
        started = time.perf_counter_ns()
        function()
        times.append((time.perf_counter_ns() - started) / 1000)
    times.sort()
    return statistics.median(times), times[int(0.95 * (len(times) - 1))], times[0]


def build(directory: Path) -> tuple[Any, dict[str, Any]]:
    """A migrated, seeded SQLite database with bars, and the analysis context from it."""
    import numpy as np
    import pandas as pd

    from tradeloop import migrate
    from tradeloop.db import Database
    from tradeloop.domains import load_models
    from tradeloop.market_data import service as market_data
    from tradeloop.market_data.bar_files import ParsedBars
    from tradeloop.prompts.analysis import analysis_variables
    from tradeloop.prompts.seeds import seed_prompt_templates

    url = f"sqlite:///{directory / 'bench.db'}"
    migrate.upgrade(url)
    load_models()
    db = Database.from_url(url)
    rng = np.random.default_rng(3)
    close = 150 * np.exp(np.cumsum(rng.normal(0.0005, 0.015, 300)))
    frame = pd.DataFrame({
        "ts": pd.date_range("2025-01-01", periods=300, freq="D", tz="UTC"),
        "open": close * (1 + rng.normal(0, 0.003, 300)), "high": close * 1.012,
        "low": close * 0.988, "close": close, "volume": rng.integers(1e6, 5e6, 300) * 1.0})
    with db.unit_of_work() as session:
        seed_prompt_templates(session=session)
        market_data.import_bars(session=session, symbol="AAPL", timeframe="1d",
                                parsed=ParsedBars("plain", frame, 0), source="bench")
    with db.unit_of_work() as session:
        context = analysis_variables(
            session, symbol="AAPL", timeframe="1d", strategy=("sma_cross", {"fast": 10,
                                                                             "slow": 30}),
            market_context={"spy_trend": "up", "vix": 14.8, "sector": "technology"},
            gex={"zero_gamma": 182.5, "call_wall": 190.0, "put_wall": 170.0})
    return db, context


def measure(db: Any, context: dict[str, Any], rounds: int) -> dict[str, Any]:
    from jinja2 import Environment
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from tradeloop.prompts.rendering import render
    from tradeloop.prompts.resolution import resolve_prompt

    results: dict[str, Any] = {}
    with db.unit_of_work() as session:
        prompt = resolve_prompt(session=session, owner_id=None)
        text = prompt.text
        rendered = prompt.render(context)
        results["rendered_chars"] = len(rendered)
        results["template_chars"] = len(text)

        def resolve_and_render() -> str:
            return resolve_prompt(session=session, owner_id=None).render(context)

        results["1 resolve + render (cached)"] = median_us(resolve_and_render, rounds)
        results["1a resolve only"] = median_us(
            lambda: resolve_prompt(session=session, owner_id=None), rounds)
        results["1b render only"] = median_us(lambda: prompt.render(context), rounds)
        results["1c   render without its INFO log line"] = median_us(
            lambda: render(prompt.compiled, context, limits=prompt.limits), rounds)
    # Prompts are plain text for a model, not HTML: no autoescaping, as in the sandbox.
    plain = Environment(autoescape=False)  # noqa: S701
    sandboxed = ImmutableSandboxedEnvironment()
    for environment in (plain, sandboxed):  # the one filter the seeded templates add
        environment.filters["na"] = lambda value, text="n/a": text if value is None else value
    assert plain.from_string(text).render(**context).count("AAPL") > 0
    results["2 jinja2 compile + render each call"] = median_us(
        lambda: plain.from_string(text).render(**context), max(rounds // 10, 50), warmup=20)
    results["2a sandboxed compile + render each call"] = median_us(
        lambda: sandboxed.from_string(text).render(**context), max(rounds // 10, 50),
        warmup=20)
    return results


LOG_GOAL_MS = 1.0
LOG_MODES = ("off", "background", "inline")


def percentiles_ms(times_ns: list[int]) -> tuple[float, float]:
    times_ns = sorted(times_ns)
    return (statistics.median(times_ns) / 1e6, times_ns[int(0.95 * (len(times_ns) - 1))] / 1e6)


def logging_overhead(url: str, data_dir: Path, rounds: int) -> dict[str, Any]:
    """p50/p95 of `execute` per logging mode on the database at `url`, the overheads against
    no logging, and the logging step alone."""
    from tradeloop import migrate
    from tradeloop.accounts import service as accounts
    from tradeloop.db import Database
    from tradeloop.domains import load_models
    from tradeloop.llm import log_writer
    from tradeloop.llm import service as llm
    from tradeloop.settings import Settings

    migrate.upgrade(url)
    load_models()
    db = Database.from_url(url)
    with db.unit_of_work() as session:
        user_id = accounts.create_user(session=session, password=secrets.token_urlsafe(16),
                                       email=f"bench-{time.time_ns()}@example.com").id
    call = llm.PromptCall(user_id=user_id, user_text="Analyse AAPL on the daily chart.",
                          context={"symbol": "AAPL", "latest_close": 187.5,
                                   "indicators": {"sma_20": 182.1, "sma_50": 178.0,
                                                  "rsi_14": 61.0, "atr_14": 3.1}})
    settings = {mode: Settings(  # type: ignore[call-arg]
        _env_file=None, tradeloop_data_dir=data_dir, disable_prompt_logging=mode == "off",
        prompt_log_mode="inline" if mode == "inline" else "background") for mode in LOG_MODES}
    times: dict[str, list[int]] = {mode: [] for mode in LOG_MODES}
    step: dict[str, list[int]] = {mode: [] for mode in LOG_MODES[1:]}
    figures: dict[str, Any] = {}
    try:
        for mode in LOG_MODES:  # warm-up
            for _ in range(30):
                llm.execute(db, settings[mode], call)
        log_writer.flush(db, 60)
        # The modes take turns call by call (in a rotating order), so that the machine's load
        # swings hit them alike; block-wise runs drifted by more than the overhead itself.
        for index in range(rounds):
            for mode in LOG_MODES[index % 3:] + LOG_MODES[:index % 3]:
                started = time.perf_counter_ns()
                result = llm.execute(db, settings[mode], call)
                times[mode].append(time.perf_counter_ns() - started)
            for mode in step:  # the logging step alone, as execute runs it last
                started = time.perf_counter_ns()
                llm._log(db, settings[mode], call, result)  # the private last step of execute
                step[mode].append(time.perf_counter_ns() - started)
        drain_started = time.perf_counter()
        figures["drained"] = log_writer.flush(db, 60)
        figures["drain s"] = time.perf_counter() - drain_started
    finally:
        log_writer.shutdown(db, 10)
        db.dispose()
    for mode in LOG_MODES:
        figures[f"execute, logging {mode}"] = percentiles_ms(times[mode])
    base = figures["execute, logging off"]
    for mode in step:
        figures[f"{mode}: execute minus no logging"] = tuple(
            logged - unlogged for logged, unlogged in
            zip(figures[f"execute, logging {mode}"], base, strict=True))
        figures[f"{mode}: logging step alone"] = percentiles_ms(step[mode])
    return figures


def print_logging_overhead(name: str, figures: dict[str, Any], rounds: int) -> None:
    print(f"\nexecution-logging overhead per call on {name} ({rounds} execute calls per "
          f"mode, taking turns; local analyst)")
    print(f"{'measurement':44} {'p50 ms':>10} {'p95 ms':>10}")
    for name_, value in figures.items():
        if isinstance(value, tuple):
            print(f"{name_:44} {value[0]:>10.3f} {value[1]:>10.3f}")
    overhead = figures["background: execute minus no logging"][0]
    print(f"the writer drained its queue {figures['drain s']:.3f} s after the last call; "
          f"goal p50 < {LOG_GOAL_MS:.0f} ms (background): "
          f"{'met' if overhead < LOG_GOAL_MS else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--log-rounds", type=int, default=2000)
    parser.add_argument("--postgresql-url", help="a scratch PostgreSQL database for the "
                        "execution-logging rows (migrated to head, rows left behind)")
    args = parser.parse_args()

    from tradeloop.logs import configure_logging

    with tempfile.TemporaryDirectory() as directory, \
            open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        configure_logging("INFO", "json")
        db, context = build(Path(directory))
        results = measure(db, context, args.rounds)
        db.dispose()
        log_urls = {"SQLite (file, WAL)": f"sqlite:///{Path(directory) / 'bench.db'}"}
        if args.postgresql_url:
            log_urls["PostgreSQL"] = args.postgresql_url
        logging_results = {name: logging_overhead(url, Path(directory), args.log_rounds)
                           for name, url in log_urls.items()} if args.log_rounds else {}
    cached = results["1 resolve + render (cached)"][0]
    compiled = results["2 jinja2 compile + render each call"][0]
    print(f"daily template: {results['template_chars']} chars, renders to "
          f"{results['rendered_chars']} chars; {args.rounds} calls per row")
    print(f"{'measurement':44} {'p50 µs':>10} {'p95 µs':>10} {'min µs':>10}")
    for name, value in results.items():
        if isinstance(value, tuple):
            print(f"{name:44} {value[0]:>10.1f} {value[1]:>10.1f} {value[2]:>10.1f}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} CPUs)")
    print(f"goal p50 < {GOAL_US:.0f} µs cached: {'met' if cached < GOAL_US else 'NOT met'}; "
          f"{compiled / cached:.0f}x faster than compiling each call")
    for name, figures in logging_results.items():
        print_logging_overhead(name, figures, args.log_rounds)
    if args.json:
        args.json.write_text(json.dumps(results | {"execution logging": logging_results},
                                        indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
