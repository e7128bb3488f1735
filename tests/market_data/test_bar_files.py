"""OHLCV file parsing: every layout gives the same bars, every bad row is reported at once."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeloop.market_data import bar_files
from tradeloop.market_data.bar_files import (
    BAR_COLUMNS,
    TIMEFRAMES,
    BarFileError,
    BarRowError,
    ParsedBars,
    parse_bar_rows,
    read_bars_file,
)

DAYS = ["2024-01-02", "2024-01-03", "2024-01-04"]
OHLCV = [(187.15, 188.44, 183.89, 185.64, 82488700),
         (184.22, 185.88, 183.43, 184.25, 58414500),
         (182.15, 183.09, 180.88, 181.91, 71983600)]
# 14:30 UTC = 09:30 New York, the session open TradingView stamps daily bars with.
UNIX_OPENS = [1704205800, 1704292200, 1704378600]


def expected_daily() -> pd.DataFrame:
    frame = pd.DataFrame(OHLCV, columns=list(BAR_COLUMNS[1:]), dtype="float64")
    frame.insert(0, "ts", pd.to_datetime(DAYS).tz_localize("UTC").astype("datetime64[ns, UTC]"))
    return frame


def csv_file(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text.lstrip("\n"))
    return path


def rows_text(first_columns: list[object], extra: str = "") -> str:
    return "".join(f"{key},{o},{h},{lo},{c}{extra.format(c=c)},{v}\n"
                   for key, (o, h, lo, c, v) in zip(first_columns, OHLCV, strict=False))


def yahoo_csv(tmp_path: Path) -> ParsedBars:
    text = "Date,Open,High,Low,Close,Adj Close,Volume\n" + rows_text(DAYS, extra=",{c}")
    return read_bars_file(csv_file(tmp_path, text), filename="AAPL.csv", timeframe="1d")


def tradingview_unix_csv(tmp_path: Path) -> ParsedBars:
    lines = [f"{t},{o},{h},{lo},{c},{v},181.2,55.1" for t, (o, h, lo, c, v)
             in zip(UNIX_OPENS, OHLCV, strict=True)]
    text = "time,open,high,low,close,Volume,MA,RSI\n" + "\n".join(lines)
    return read_bars_file(csv_file(tmp_path, text), filename="tv.csv", timeframe="1d")


def tradingview_iso_csv(tmp_path: Path) -> ParsedBars:
    stamps = [f"{day}T00:00:00-05:00" for day in DAYS]
    text = "time,open,high,low,close,Volume\n" + rows_text(stamps)
    return read_bars_file(csv_file(tmp_path, text, "tv.txt"), filename="tv.txt", timeframe="1d")


def plain_csv(tmp_path: Path) -> ParsedBars:
    text = " Timestamp , OPEN,high,low,Close,volume\n" + rows_text(DAYS)
    source = io.BytesIO(text.encode())
    return read_bars_file(source, filename="plain.CSV", timeframe="1d")


def plain_parquet(tmp_path: Path) -> ParsedBars:
    frame = pd.DataFrame(OHLCV, columns=["open", "high", "low", "close", "volume"],
                         index=pd.DatetimeIndex(DAYS))
    frame.to_parquet(tmp_path / "bars.parquet")
    return read_bars_file(tmp_path / "bars.parquet", filename="bars.parquet", timeframe="1d")


def json_rows(tmp_path: Path) -> ParsedBars:
    rows = [{"Date": day, "Open": o, "HIGH": h, "low": lo, "close": c, "volume": v}
            for day, (o, h, lo, c, v) in zip(DAYS, OHLCV, strict=True)]
    return parse_bar_rows(rows, timeframe="1d")


@pytest.mark.parametrize(("build", "layout"), [
    (yahoo_csv, "yahoo"), (tradingview_unix_csv, "tradingview"),
    (tradingview_iso_csv, "tradingview"), (plain_csv, "plain"), (plain_parquet, "plain"),
    (json_rows, "plain")])
def test_every_layout_gives_the_same_daily_bars(
        tmp_path: Path, build: Callable[[Path], ParsedBars], layout: str) -> None:
    parsed = build(tmp_path)
    assert parsed.layout == layout
    assert parsed.dropped_duplicates == 0
    pd.testing.assert_frame_equal(parsed.frame, expected_daily())


def test_yfinance_parquet_with_tz_index_and_ticker_columns(tmp_path: Path) -> None:
    index = pd.DatetimeIndex(DAYS, name="Date").tz_localize("America/New_York")
    columns = pd.MultiIndex.from_product([["Open", "High", "Low", "Close", "Volume"], ["AAPL"]],
                                         names=["Price", "Ticker"])
    frame = pd.DataFrame(OHLCV, index=index, columns=columns)
    frame.insert(4, ("Adj Close", "AAPL"), frame[("Close", "AAPL")] * 0.99)
    frame.to_parquet(tmp_path / "aapl.pq")
    parsed = read_bars_file(tmp_path / "aapl.pq", filename="aapl.pq", timeframe="1w")
    assert parsed.layout == "yahoo"
    pd.testing.assert_frame_equal(parsed.frame, expected_daily())


def test_intraday_bars_keep_the_exact_instant(tmp_path: Path) -> None:
    text = """
time,open,high,low,close,Volume
2024-03-08T09:30:00-05:00,10,11,9,10.5,100
2024-03-11T09:35:00-04:00,10,11,9,10.5,100
2024-03-11T13:40:00Z,10,11,9,10.5,100
2024-03-11 13:45:00,10,11,9,10.5,100
1710165000,10,11,9,10.5,
"""
    parsed = read_bars_file(csv_file(tmp_path, text), filename="x.csv", timeframe="5m")
    assert parsed.frame.ts.tolist() == [pd.Timestamp(t, tz="UTC") for t in (
        "2024-03-08 14:30", "2024-03-11 13:35", "2024-03-11 13:40", "2024-03-11 13:45",
        "2024-03-11 13:50")]
    assert str(parsed.frame.ts.dtype) == "datetime64[ns, UTC]"
    assert parsed.frame.volume.tolist() == [100.0] * 4 + [0.0]


def test_every_bad_row_is_reported_with_its_line(tmp_path: Path) -> None:
    text = """
Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,10,11,9,10.5,10.5,100
2024-13-01,10,11,9,10.5,10.5,100
2024-01-04,10,9.5,10.0,9.8,9.8,100
2024-01-05,10,11,9,abc,1,100
2024-01-06,10,11,9,10.5,10.5,-5
2024-01-07,null,null,null,null,null,null
,10,11,9,10.5,10.5,100
2024-01-09,0,11,9,10.5,10.5,100
2024-01-10,10,10.2,9,10.5,10.5,100
2024-01-11,10,11,10.1,10.5,10.5,100
2024-01-12,10,,9,10.5,10.5,100
2024-01-13,10,inf,9,10.5,10.5,100
2024-01-02,10,11,9,10.6,10.6,100
2024-01-15,10,11,9,10.5,10.5,100
"""
    with pytest.raises(BarFileError) as caught:
        read_bars_file(csv_file(tmp_path, text), filename="x.csv", timeframe="1d")
    assert caught.value.layout == "yahoo"
    assert caught.value.errors == [
        BarRowError(3, "unparseable date '2024-13-01'"),
        BarRowError(4, "high 9.5 is below low 10.0"),
        BarRowError(5, "non-numeric close 'abc'"),
        BarRowError(6, "negative volume -5"),
        BarRowError(7, "no prices (a 'null' row)"),
        BarRowError(8, "missing date"),
        BarRowError(9, "non-positive open 0"),
        BarRowError(10, "high 10.2 is below close 10.5"),
        BarRowError(11, "low 10.1 is above open 10"),
        BarRowError(12, "missing high"),
        BarRowError(13, "non-finite high inf"),
        BarRowError(14, "duplicate of line 2 with different values"),
    ]
    assert "line 3: unparseable date" in str(caught.value)


@pytest.mark.parametrize("quote", ["", '"'])
def test_rows_with_a_missing_or_extra_field_are_refused(quote: str) -> None:
    text = f"""time,open,high,low,close,Volume
2024-01-02,10,11,9,10.5,100

2024-01-03,10,11,9,10.5
2024-01-04,10,11,9,10.5,100,{quote}7{quote}
2024-01-05,{quote}10{quote},11,9,10.5,100
"""
    with pytest.raises(BarFileError) as caught:
        read_bars_file(text.encode(), filename="x.csv", timeframe="1d")
    assert caught.value.errors == [BarRowError(4, "5 fields where the header has 6"),
                                   BarRowError(5, "7 fields where the header has 6")]


def test_a_quoted_comma_is_part_of_its_value() -> None:
    text = 'time,open,high,low,close,Volume,note\n2024-01-02,10,11,9,10.5,100,"a, b"\n'
    parsed = read_bars_file(text.encode(), filename="x.csv", timeframe="1d")
    assert parsed.frame.close.tolist() == [10.5]


def test_several_problems_on_one_row_are_joined() -> None:
    rows = [{"ts": "soon", "open": "x", "high": 1, "low": 2, "close": 1.5, "volume": -1}]
    with pytest.raises(BarFileError) as caught:
        parse_bar_rows(rows, timeframe="1h")
    assert caught.value.errors == [BarRowError(
        1, "unparseable date 'soon'; non-numeric open 'x'; negative volume -1; "
           "high 1 is below low 2")]


def test_exact_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    text = "date,open,high,low,close,volume\n" + rows_text(DAYS) + rows_text(DAYS[:2])
    parsed = read_bars_file(csv_file(tmp_path, text), filename="x.csv", timeframe="1d")
    assert parsed.dropped_duplicates == 2
    pd.testing.assert_frame_equal(parsed.frame, expected_daily())


def test_rows_in_any_order_come_out_sorted(tmp_path: Path) -> None:
    text = "date,open,high,low,close,volume\n" + "".join(reversed(rows_text(DAYS).splitlines(
        keepends=True)))
    parsed = read_bars_file(csv_file(tmp_path, text), filename="x.csv", timeframe="1d")
    pd.testing.assert_frame_equal(parsed.frame, expected_daily())


def test_chunk_boundaries_keep_line_numbers(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bar_files, "CSV_CHUNK_ROWS", 3)
    days = pd.date_range("2024-01-01", periods=10).strftime("%Y-%m-%d").tolist()
    lines = [f"{day},10,11,9,10,100" for day in days]
    lines[2] = f"{days[2]},10,11,9,10,-1"  # line 4: last row of the first chunk
    lines[3] = f"{days[3]},10,8,9,10,100"  # line 5: first row of the second chunk
    lines[6] = ""  # line 8: blank lines are skipped without shifting the numbering
    lines[8] = f"{days[1]},10,11,9,10.5,100"  # line 10: conflicts with line 3, two chunks back
    calls: list[tuple[int, int]] = []
    path = csv_file(tmp_path, "date,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    with pytest.raises(BarFileError) as caught:
        read_bars_file(path, filename="x.csv", timeframe="1d",
                       progress=lambda done, total: calls.append((done, total)))
    assert [(e.line, e.message) for e in caught.value.errors] == [
        (4, "negative volume -1"), (5, "high 8 is below low 9"),
        (10, "duplicate of line 3 with different values")]
    assert calls == [(0, 10), (3, 10), (6, 10), (9, 10), (10, 10)]


def test_chunked_file_gives_the_same_bars(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bar_files, "CSV_CHUNK_ROWS", 2)
    pd.testing.assert_frame_equal(yahoo_csv(tmp_path).frame, expected_daily())


def test_parquet_bad_rows_are_numbered_from_one(tmp_path: Path) -> None:
    frame = pd.DataFrame({"date": pd.to_datetime(DAYS), "open": [10.0, -1.0, np.nan],
                          "high": 11.0, "low": 9.0, "close": 10.0, "volume": 1.0})
    frame.to_parquet(tmp_path / "x.parquet", index=False)
    with pytest.raises(BarFileError) as caught:
        read_bars_file(tmp_path / "x.parquet", filename="x.parquet", timeframe="1d")
    assert caught.value.errors == [BarRowError(2, "non-positive open -1.0"),
                                   BarRowError(3, "missing open")]


def test_unknown_extension_is_refused() -> None:
    with pytest.raises(BarFileError) as caught:
        read_bars_file(b"date,open\n", filename="bars.xlsx", timeframe="1d")
    assert caught.value.errors[0].line == 0
    assert "'.xlsx'" in caught.value.errors[0].message


def test_missing_columns_name_what_was_found_and_what_is_supported(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "Date,Open,High,Close,Volume\n2024-01-02,1,2,1,5\n")
    with pytest.raises(BarFileError) as caught:
        read_bars_file(path, filename="x.csv", timeframe="1d")
    message = caught.value.errors[0].message
    assert caught.value.errors[0].line == 0
    assert "missing column(s) low" in message
    assert "found columns: Date, Open, High, Close, Volume" in message
    assert all(layout in message for layout in ("yahoo (", "tradingview (", "plain ("))


@pytest.mark.parametrize(("content", "filename", "fragment"), [
    (b"", "x.csv", "empty"), (b" \n\n", "x.csv", "empty"),
    (b"date,open,high,low,close,volume\n", "x.csv", "no bars"),
    (b"PAR1 this is not parquet", "x.parquet", "not a readable Parquet file"),
    (b"date,open,high,low,close\n\xff\xfe,1,1,1,1\n", "x.csv", "UTF-8"),
])
def test_unreadable_files_are_refused(content: bytes, filename: str, fragment: str) -> None:
    with pytest.raises(BarFileError) as caught:
        read_bars_file(content, filename=filename, timeframe="1d")
    assert [e.line for e in caught.value.errors] == [0]
    assert fragment in caught.value.errors[0].message


def test_row_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bar_files, "MAX_ROWS", 2)
    text = "date,open,high,low,close,volume\n" + rows_text(DAYS)
    with pytest.raises(BarFileError, match="too many rows"):
        read_bars_file(text.encode(), filename="x.csv", timeframe="1d")
    with pytest.raises(BarFileError, match="too many rows"):
        plain_parquet(tmp_path)
    with pytest.raises(BarFileError, match="too many rows"):
        json_rows(tmp_path)


def test_timeframes_are_validated() -> None:
    assert TIMEFRAMES == ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")
    with pytest.raises(BarFileError) as caught:
        parse_bar_rows([{"ts": DAYS[0]}], timeframe="2d")
    assert caught.value.errors[0].line == 0
    assert "unknown timeframe '2d'" in caught.value.errors[0].message


def test_parquet_without_a_date_name_uses_its_first_column(tmp_path: Path) -> None:
    frame = expected_daily().rename(columns={"ts": "Bar start (UTC)"})
    frame.to_parquet(tmp_path / "x.parquet", index=False)
    parsed = read_bars_file((tmp_path / "x.parquet").open("rb"), filename="x.parquet",
                            timeframe="1d")
    pd.testing.assert_frame_equal(parsed.frame, expected_daily())


def test_parquet_with_several_tickers_is_refused(tmp_path: Path) -> None:
    columns = pd.MultiIndex.from_product([["Open", "High", "Low", "Close"], ["AAPL", "MSFT"]])
    pd.DataFrame([[1.0] * 8], index=pd.DatetimeIndex(DAYS[:1]), columns=columns) \
        .to_parquet(tmp_path / "two.parquet")
    with pytest.raises(BarFileError, match="one symbol per file"):
        read_bars_file(tmp_path / "two.parquet", filename="two.parquet", timeframe="1d")


def test_json_rows_that_are_not_objects() -> None:
    with pytest.raises(BarFileError, match="no rows given"):
        parse_bar_rows([], timeframe="1d")
    with pytest.raises(BarFileError) as caught:
        parse_bar_rows([{"ts": DAYS[0]}, [1, 2]], timeframe="1d")  # type: ignore[list-item]
    assert caught.value.errors == [BarRowError(2, "row is not an object")]


@pytest.mark.parametrize(("stamp", "message"), [
    (1704205800000, "date out of range '1704205800000'"),
    (-1e15, "unparseable date '-1000000000000000.0'"),
    ("1850-01-01", "date out of range '1850-01-01'")])
def test_implausible_dates_are_refused(stamp: object, message: str) -> None:
    rows = [{"time": stamp, "open": 1, "high": 1, "low": 1, "close": 1}]
    with pytest.raises(BarFileError) as caught:
        parse_bar_rows(rows, timeframe="1d")
    assert caught.value.errors == [BarRowError(1, message)]


prices = st.floats(min_value=0.01, max_value=1e6, allow_nan=False).map(lambda p: round(p, 4))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(prices, prices, prices, st.integers(0, 10**9)), min_size=1,
                max_size=30))
def test_csv_and_json_agree_on_random_valid_bars(bars: list[tuple[float, ...]]) -> None:
    ts = pd.date_range("2020-01-01 09:30", periods=len(bars), freq="5min", tz="UTC")
    rows = [{"ts": t.isoformat(), "open": a, "high": max(a, b, c), "low": min(a, b, c),
             "close": c, "volume": v} for t, (a, b, c, v) in zip(ts, bars, strict=True)]
    text = "ts,open,high,low,close,volume\n" + "".join(
        f"{r['ts']},{r['open']!r},{r['high']!r},{r['low']!r},{r['close']!r},{r['volume']}\n"
        for r in rows)
    from_csv = read_bars_file(text.encode(), filename="x.csv", timeframe="5m").frame
    pd.testing.assert_frame_equal(from_csv, parse_bar_rows(rows, timeframe="5m").frame)
    assert from_csv.open.tolist() == [r["open"] for r in rows]
