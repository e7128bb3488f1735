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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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
    from tradeloop.prompts.context import analysis_context
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
        context = analysis_context(
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from tradeloop.logs import configure_logging

    with tempfile.TemporaryDirectory() as directory, \
            open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        configure_logging("INFO", "json")
        db, context = build(Path(directory))
        results = measure(db, context, args.rounds)
        db.dispose()
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
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
