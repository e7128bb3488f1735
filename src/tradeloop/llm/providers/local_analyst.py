"""The `local` provider: an offline, deterministic, rules-based technical analyst.

It is not a language model. It reads the numbers in the context the prompt was rendered from
(latest close, SMA 20/50/200, EMA, RSI, MACD, Bollinger bands, ATR, support/resistance; any of
them may be missing), scores the trend with fixed rules and answers in the same JSON format an
LLM is asked for, so the rest of the pipeline treats both alike. The rules are in docs/llm.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradeloop.llm.providers.base import (
    DEFAULT_MODELS,
    ProviderError,
    ProviderReply,
    ProviderRequest,
)

MODEL_NAME = DEFAULT_MODELS["local"]
LABEL = "tradeloop rules-based analyst (deterministic, not an LLM)"
# Scores beyond ±this make a directional call; between them the market is NEUTRAL.
DIRECTION_THRESHOLD = 0.25
FALLBACK_RISK_FRACTION = 0.02  # risk unit when neither ATR nor Bollinger bands are given
MAX_DEPTH = 4

ALIASES: dict[str, tuple[str, ...]] = {
    "close": ("latestclose", "close", "lastclose", "currentprice", "lastprice", "price",
              "closeprice"),
    "sma20": ("sma20", "ma20"),
    "sma50": ("sma50", "ma50"),
    "sma200": ("sma200", "ma200"),
    "ema": ("ema20", "ema21", "ema", "ema12", "ema9", "ema50", "ema26"),
    "rsi": ("rsi", "rsi14"),
    "macd": ("macd", "macdline", "macdmacd", "macdvalue"),
    "macd_signal": ("macdsignal", "macdsignalline", "signalline"),
    "macd_hist": ("macdhist", "macdhistogram", "histogram"),
    "bb_upper": ("bbupper", "bollingerupper", "bollingerbandsupper", "bbandsupper",
                 "upperband", "bbupperband"),
    "bb_lower": ("bblower", "bollingerlower", "bollingerbandslower", "bbandslower",
                 "lowerband", "bblowerband"),
    "atr": ("atr", "atr14"),
}
LEVEL_ALIASES = {"support": ("support", "supports", "supportlevels", "supportlevel"),
                 "resistance": ("resistance", "resistances", "resistancelevels",
                                "resistancelevel")}
BAR_KEYS = ("recentbars", "bars", "ohlcv", "candles")


class LocalAnalystProvider:
    name = "local"

    def complete(self, request: ProviderRequest, *, timeout_s: float) -> ProviderReply:
        facts = read_facts(request.context)
        if facts.close is None:
            raise ProviderError("insufficient_context", "the local rules-based analyst needs "
                                "a latest close (e.g. 'latest_close', 'close' or recent bars) "
                                "in the prompt's context variables")
        return ProviderReply(text=json.dumps(analyse(facts)), model=MODEL_NAME)


@dataclass(frozen=True)
class Facts:
    """The numbers found in a context, each None when absent."""

    close: float | None
    values: dict[str, float]
    supports: list[float]
    resistances: list[float]

    def get(self, name: str) -> float | None:
        return self.values.get(name)


def read_facts(context: Mapping[str, Any] | None) -> Facts:
    """Find the indicators in a context of any reasonable shape (flat or nested, any case,
    `sma_20`, `SMA 20`, `{"sma": {"20": …}}`, `{"macd": {"signal": …}}`)."""
    numbers, lists = _flatten(context or {})
    values = {}
    for name, keys in ALIASES.items():
        key = next((key for key in keys if key in numbers), None)
        if key is not None:
            values[name] = numbers[key]
    close = values.pop("close", None)
    if close is None:
        close = _last_bar_close(lists)
    return Facts(close=close, values=values,
                 supports=_levels(numbers, lists, LEVEL_ALIASES["support"]),
                 resistances=_levels(numbers, lists, LEVEL_ALIASES["resistance"]))


def _flatten(context: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, list[Any]]]:
    """Numbers and lists by normalised key, also under parent+key; outer keys win."""
    numbers: dict[str, float] = {}
    lists: dict[str, list[Any]] = {}
    frontier: list[tuple[str, Mapping[str, Any]]] = [("", context)]
    for _depth in range(MAX_DEPTH):
        next_frontier: list[tuple[str, Mapping[str, Any]]] = []
        for parent, mapping in frontier:
            for raw_key, value in mapping.items():
                key = _normalise(raw_key)
                for name in (key, parent + key) if parent else (key,):
                    _record(name, value, numbers, lists)
                if isinstance(value, Mapping):
                    next_frontier.append((key, value))
        frontier = next_frontier
    return numbers, lists


def _record(name: str, value: Any, numbers: dict[str, float], lists: dict[str, list[Any]]) -> None:
    number = _number(value)
    if number is not None:
        numbers.setdefault(name, number)
    elif isinstance(value, list | tuple):
        lists.setdefault(name, list(value))


def _normalise(key: object) -> str:
    return "".join(ch for ch in str(key).lower() if ch.isalnum())


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal | str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _last_bar_close(lists: Mapping[str, list[Any]]) -> float | None:
    for key in BAR_KEYS:
        bars = lists.get(key)
        if bars and isinstance(bars[-1], Mapping):
            close = _number(bars[-1].get("close", bars[-1].get("c")))
            if close is not None:
                return close
    return None


def _levels(numbers: Mapping[str, float], lists: Mapping[str, list[Any]],
            keys: Iterable[str]) -> list[float]:
    levels: list[float] = []
    for key in keys:
        if key in numbers:
            levels.append(numbers[key])
        for item in lists.get(key, []):
            number = _number(item.get("price") if isinstance(item, Mapping) else item)
            if number is not None:
                levels.append(number)
    return [level for level in levels if level > 0]


def score_trend(facts: Facts) -> tuple[float, list[str]]:
    """A score in [-1, 1] (mean of the available votes) and the reasons behind it."""
    assert facts.close is not None
    close = facts.close
    votes: list[tuple[float, str]] = []
    for name, label in (("sma20", "SMA 20"), ("sma50", "SMA 50"), ("sma200", "SMA 200"),
                        ("ema", "EMA")):
        level = facts.get(name)
        if level is not None:
            above = close > level
            votes.append((1.0 if above else -1.0,
                          f"close {close:g} {'above' if above else 'below'} {label} {level:g}"))
    sma50, sma200 = facts.get("sma50"), facts.get("sma200")
    if sma50 is not None and sma200 is not None:
        golden = sma50 > sma200
        votes.append((1.0 if golden else -1.0,
                      f"SMA 50 {'above' if golden else 'below'} SMA 200"))
    votes.extend(_momentum_votes(facts))
    if not votes:
        return 0.0, ["no indicators in the context"]
    return sum(vote for vote, _ in votes) / len(votes), [reason for _, reason in votes]


def _momentum_votes(facts: Facts) -> list[tuple[float, str]]:
    votes: list[tuple[float, str]] = []
    rsi = facts.get("rsi")
    if rsi is not None:
        if rsi >= 70:
            votes.append((-1.0, f"RSI {rsi:.1f} overbought"))
        elif rsi <= 30:
            votes.append((1.0, f"RSI {rsi:.1f} oversold"))
        else:
            votes.append(((rsi - 50) / 20, f"RSI {rsi:.1f}"))
    macd, signal, hist = facts.get("macd"), facts.get("macd_signal"), facts.get("macd_hist")
    if hist is None and macd is not None and signal is not None:
        hist = macd - signal
    if hist is not None:
        votes.append((1.0 if hist > 0 else -1.0,
                      f"MACD {'above' if hist > 0 else 'below'} its signal line"))
    upper, lower, close = facts.get("bb_upper"), facts.get("bb_lower"), facts.close
    if upper is not None and lower is not None and upper > lower and close is not None:
        position = (close - lower) / (upper - lower)
        if position >= 1:
            votes.append((-0.5, "close at or above the upper Bollinger band (stretched)"))
        elif position <= 0:
            votes.append((0.5, "close at or below the lower Bollinger band (stretched)"))
    return votes


def risk_unit(facts: Facts) -> float:
    """ATR, else a quarter of the Bollinger width, else 2 % of the close."""
    assert facts.close is not None
    atr = facts.get("atr")
    if atr is not None and atr > 0:
        return atr
    upper, lower = facts.get("bb_upper"), facts.get("bb_lower")
    if upper is not None and lower is not None and upper > lower:
        return (upper - lower) / 4
    return facts.close * FALLBACK_RISK_FRACTION


def analyse(facts: Facts) -> dict[str, Any]:
    """The analysis JSON for these facts (SPEC §7's output schema)."""
    assert facts.close is not None
    score, reasons = score_trend(facts)
    unit = risk_unit(facts)
    if score >= DIRECTION_THRESHOLD:
        direction, levels = "LONG", _long_levels(facts, unit)
    elif score <= -DIRECTION_THRESHOLD:
        direction, levels = "SHORT", _short_levels(facts, unit)
    else:
        direction, levels = "NEUTRAL", _range_levels(facts.close, unit)
    confidence = 0.5 + 0.4 * abs(score) if direction != "NEUTRAL" else 0.5 - 0.4 * abs(score)
    reasoning = (f"{LABEL}: trend score {score:+.2f} from {len(reasons)} rule(s) → {direction}. "
                 + "; ".join(reasons) + f". Risk unit {unit:g}.")
    return {"direction": direction, **{k: str(_price(v, facts.close)) for k, v in levels.items()},
            "confidence": round(confidence, 2), "reasoning": reasoning}


def _long_levels(facts: Facts, unit: float) -> dict[str, float]:
    close = facts.close or 0.0
    entry_low, entry_high = close - 0.5 * unit, close
    stop = entry_low - 1.5 * unit
    nearby_support = [s for s in facts.supports if entry_low - 3 * unit < s < entry_low]
    if nearby_support:  # just under the closest support, where the idea is proven wrong
        stop = max(nearby_support) - 0.25 * unit
    conservative = entry_high + 2 * unit
    nearby_resistance = [r for r in facts.resistances if r > entry_high + unit]
    if nearby_resistance:
        conservative = min(nearby_resistance)
    return {"entry_price_low": entry_low, "entry_price_high": entry_high, "stop_loss": stop,
            "target_conservative": conservative,
            "target_aggressive": max(conservative + unit, entry_high + 4 * unit)}


def _short_levels(facts: Facts, unit: float) -> dict[str, float]:
    close = facts.close or 0.0
    entry_low, entry_high = close, close + 0.5 * unit
    stop = entry_high + 1.5 * unit
    nearby_resistance = [r for r in facts.resistances if entry_high < r < entry_high + 3 * unit]
    if nearby_resistance:
        stop = min(nearby_resistance) + 0.25 * unit
    conservative = entry_low - 2 * unit
    nearby_support = [s for s in facts.supports if s < entry_low - unit]
    if nearby_support:
        conservative = max(nearby_support)
    return {"entry_price_low": entry_low, "entry_price_high": entry_high, "stop_loss": stop,
            "target_conservative": conservative,
            "target_aggressive": min(conservative - unit, entry_low - 4 * unit)}


def _range_levels(close: float, unit: float) -> dict[str, float]:
    # No trade: the levels describe the range a breakout would have to leave.
    return {"entry_price_low": close - 0.5 * unit, "entry_price_high": close + 0.5 * unit,
            "stop_loss": close - 1.5 * unit, "target_conservative": close + unit,
            "target_aggressive": close + 2 * unit}


def _price(value: float, close: float) -> Decimal:
    """A positive price rounded to a sensible tick for the instrument's magnitude."""
    tick = Decimal("0.01") if close >= 1 else Decimal("0.000001")
    return max(Decimal(repr(value)).quantize(tick), tick)
