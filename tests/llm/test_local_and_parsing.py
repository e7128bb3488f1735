"""The rules-based analyst, answer parsing, and the offline tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.llm.conftest import VALID_LONG, analysis_json
from tradeloop.llm.parsing import OutputError, extract_json_object, parse_analysis
from tradeloop.llm.providers import ProviderError, ProviderRequest
from tradeloop.llm.providers.local_analyst import LocalAnalystProvider, read_facts
from tradeloop.llm.schemas import AnalysisOutput, Direction
from tradeloop.llm.tokens import count_tokens

BULLISH = {"latest_close": 187.5, "indicators": {
    "SMA 20": 182.1, "sma_50": 178.0, "sma": {"200": 165.0}, "EMA_20": 183.0, "RSI(14)": 61.0,
    "macd": {"macd": 1.2, "signal": 0.8}, "bollinger": {"upper": 192.0, "lower": 176.0},
    "atr_14": 3.1}, "support": [180.0, 175.0], "resistance": 195.0}
BEARISH = {"close": "50", "sma20": 55, "sma50": 60, "sma200": 70, "rsi": 35, "macd_hist": -0.4}


def local_answer(context: dict) -> AnalysisOutput:
    request = ProviderRequest(user_text="Analyse", system_text=None, model="rules-analyst-v1",
                              temperature=None, max_tokens=None, json_mode=True, context=context)
    return parse_analysis(LocalAnalystProvider().complete(request, timeout_s=1).text)


class TestLocalAnalyst:
    def test_reads_indicators_in_any_reasonable_shape(self) -> None:
        facts = read_facts(BULLISH)
        assert facts.close == 187.5
        assert {k: facts.get(k) for k in ("sma20", "sma50", "sma200", "ema", "rsi", "macd",
                                          "macd_signal", "bb_upper", "bb_lower", "atr")} == {
            "sma20": 182.1, "sma50": 178.0, "sma200": 165.0, "ema": 183.0, "rsi": 61.0,
            "macd": 1.2, "macd_signal": 0.8, "bb_upper": 192.0, "bb_lower": 176.0, "atr": 3.1}
        assert (facts.supports, facts.resistances) == ([180.0, 175.0], [195.0])

    def test_bullish_context_gives_a_consistent_long(self) -> None:
        answer = local_answer(BULLISH)
        assert answer.direction is Direction.LONG and answer.confidence > 0.7
        # Stop just under the nearest support, first target at the resistance.
        assert answer.stop_loss == Decimal("179.22")
        assert answer.target_conservative == Decimal("195.00")
        assert "not an LLM" in answer.reasoning and "SMA 200" in answer.reasoning

    def test_bearish_context_gives_a_consistent_short(self) -> None:
        answer = local_answer(BEARISH)
        assert answer.direction is Direction.SHORT
        assert answer.stop_loss > answer.entry_price_high > answer.target_conservative

    def test_mixed_or_bare_context_is_neutral(self) -> None:
        assert local_answer({"close": 100, "sma20": 99, "sma50": 101}).direction is \
            Direction.NEUTRAL
        bare = local_answer({"recent_bars": [{"close": 9.5}, {"close": 10.0}]})
        assert bare.direction is Direction.NEUTRAL and bare.entry_price_low < 10

    def test_is_deterministic(self) -> None:
        assert local_answer(BULLISH) == local_answer(json.loads(json.dumps(BULLISH)))

    def test_sub_dollar_prices_keep_precision(self) -> None:
        answer = local_answer({"close": 0.000123, "sma20": 0.0001, "sma50": 0.00009})
        assert answer.direction is Direction.LONG and answer.stop_loss > 0

    def test_needs_a_price(self) -> None:
        with pytest.raises(ProviderError) as failure:
            local_answer({"symbol": "AAPL", "rsi": 50})
        assert failure.value.error_type == "insufficient_context"


class TestParsing:
    @pytest.mark.parametrize("text", [
        analysis_json(),
        f"```json\n{analysis_json()}\n```",
        f"Sure! Here it is:\n```\n{analysis_json()}\n```",
        f"My view {{not json}} then {analysis_json()} and done.",
    ])
    def test_finds_the_object(self, text: str) -> None:
        assert extract_json_object(text)["direction"] == "LONG"

    @pytest.mark.parametrize(("text", "error_type"), [
        ("no json here", "malformed_output"),
        ("[1, 2, 3]", "malformed_output"),
        (analysis_json(direction="SIDEWAYS"), "invalid_output"),
        (analysis_json(entry_price_low="101"), "invalid_output"),  # low above high
        (analysis_json(target_conservative="99"), "invalid_output"),  # LONG target below entry
        (json.dumps({k: v for k, v in VALID_LONG.items() if k != "stop_loss"}),
         "invalid_output"),
    ])
    def test_rejects(self, text: str, error_type: str) -> None:
        with pytest.raises(OutputError) as failure:
            parse_analysis(text)
        assert failure.value.error_type == error_type

    def test_short_consistency(self) -> None:
        short = {"direction": "SHORT", "entry_price_low": "100", "entry_price_high": "101",
                 "stop_loss": "104", "target_conservative": "96", "target_aggressive": "92",
                 "confidence": 0.6, "reasoning": "Lower highs."}
        assert parse_analysis(json.dumps(short)).direction is Direction.SHORT
        with pytest.raises(OutputError):
            parse_analysis(json.dumps(short | {"stop_loss": "99"}))

    def test_prices_are_exact_decimals(self) -> None:
        answer = parse_analysis(analysis_json(entry_price_low=99.1))
        assert answer.entry_price_low == Decimal("99.1")


class TestOfflineTokenizer:
    def test_counts_tokens(self) -> None:
        assert count_tokens("hello world") == 2 and count_tokens("") == 0
        assert count_tokens("<|endoftext|>") > 1  # markers in user text are plain text

    def test_works_with_the_network_unavailable(self, tmp_path: Path) -> None:
        # A fresh interpreter whose sockets all fail and whose tiktoken cache is empty.
        script = (
            "import socket\n"
            "def refuse(*a, **k): raise OSError('network disabled for this test')\n"
            "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
            "socket.getaddrinfo = refuse\n"
            "from tradeloop.llm.tokens import count_tokens\n"
            "print(count_tokens('Analyse AAPL: close 187.5, RSI 61'))\n")
        env = os.environ | {"TIKTOKEN_CACHE_DIR": str(tmp_path / "empty-cache"),
                            "DATA_GYM_CACHE_DIR": str(tmp_path / "empty-cache")}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert int(done.stdout.strip()) == count_tokens("Analyse AAPL: close 187.5, RSI 61")
