"""Parse OHLCV files (untrusted uploads, CSV or Parquet) and API rows into validated bars.

Layouts come from the header: `yahoo` (Adj Close is ignored: the raw Close is stored),
`tradingview` (extra indicator columns ignored) or `plain`; no volume means volume 0.
Numbers are unix seconds, text is ISO 8601, naive times are UTC. Daily/weekly bars are keyed
by the date as written (local date for an offset, UTC date for unix seconds) at 00:00 UTC,
intraday bars by their instant in UTC. Every bad row is reported at once with its line (CSV:
header is line 1, no multi-line quoted fields; Parquet/JSON: row index + 1), and refuses the file.
A row with more or fewer fields than the header (CSV) or the first row (JSON) is refused too:
its values cannot be told apart from those of the next column.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tradeloop.market_data.timeframes import DAILY_TIMEFRAMES, TIMEFRAMES
from tradeloop.schema_types import EARLIEST, LATEST

BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
PRICES = BAR_COLUMNS[1:5]
TS_DTYPE = "datetime64[ns, UTC]"
MAX_ROWS = 5_000_000
CSV_CHUNK_ROWS = 100_000
_LINE_BATCH_BYTES = 8 * 2**20
CSV_EXTENSIONS = (".csv", ".txt")
PARQUET_EXTENSIONS = (".parquet", ".pq")
TS_NAMES = {"yahoo": ("date", "datetime"), "tradingview": ("time",),
            "plain": ("date", "datetime", "timestamp", "ts")}
JSON_TS_NAMES = ("ts", "time", "date", "datetime", "timestamp")
SUPPORTED_LAYOUTS = ("yahoo (Date, Open, High, Low, Close, Adj Close, Volume), "
                     "tradingview (time, open, high, low, close, Volume), "
                     "plain (date|datetime|timestamp|ts, open, high, low, close, volume)")
# Parsing runs at microsecond resolution so absurd dates (milliseconds read as seconds) can
# still be represented and reported; bars end up in TS_DTYPE.
_WIDE_TS = "datetime64[us, UTC]"
_MAX_UNIX_SECONDS = 9e12
_EARLIEST, _LATEST = pd.Timestamp(EARLIEST), pd.Timestamp(LATEST)  # as every API date
_NUMBER = r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?"

Progress = Callable[[int, int], None]
_Batch = tuple[pd.DataFrame, list["BarRowError"]]


@dataclass(frozen=True)
class BarRowError:
    """One refused row: 1-based `line` in the file (0 for the file as a whole)."""

    line: int
    message: str


class BarFileError(ValueError):
    """The whole file is refused; `errors` lists every bad row (line 0: the file itself)."""

    def __init__(self, errors: list[BarRowError], layout: str | None = None) -> None:
        self.errors = errors
        self.layout = layout
        shown = [f"line {e.line}: {e.message}" if e.line else e.message for e in errors]
        super().__init__(" | ".join(shown[:5] + ([f"{len(shown) - 5} more"] * (len(shown) > 5))))

    @classmethod
    def whole_file(cls, message: str, layout: str | None = None) -> BarFileError:
        """A refusal of the file as a whole (line 0)."""
        return cls([BarRowError(0, message)], layout)


@dataclass(frozen=True)
class ParsedBars:
    """Validated bars: columns BAR_COLUMNS, ts UTC ascending and unique, float64 values."""

    layout: str
    frame: pd.DataFrame
    dropped_duplicates: int


def read_bars_file(source: Path | bytes | BinaryIO, *, filename: str, timeframe: str,
                   progress: Progress | None = None) -> ParsedBars:
    """Parse and validate a CSV/Parquet OHLCV file; BarFileError lists every problem."""
    daily = _is_daily(timeframe)
    suffix = Path(filename).suffix.lower()
    if suffix not in CSV_EXTENSIONS + PARQUET_EXTENSIONS:
        raise BarFileError.whole_file(
            f"unsupported file type {suffix or '(no extension)'!r} ({filename}): "
            "upload a .csv, .txt, .parquet or .pq file")
    data = source if isinstance(source, bytes) else \
        source.read_bytes() if isinstance(source, Path) else source.read()
    if not data.strip():
        raise BarFileError.whole_file("the file is empty")
    if suffix in CSV_EXTENSIONS:
        return _read_csv(data, daily, progress)
    return _read_parquet(data, daily, progress)


def parse_bar_rows(rows: list[dict[str, Any]], *, timeframe: str) -> ParsedBars:
    """Validate JSON rows (keys ts|time|date|datetime, open..volume, any case) as bars."""
    daily = _is_daily(timeframe)
    if not rows:
        raise BarFileError.whole_file("no rows given")
    _check_row_count(len(rows))
    not_objects = [BarRowError(i + 1, "row is not an object")
                   for i, row in enumerate(rows) if not isinstance(row, dict)]
    if not_objects:
        raise BarFileError(not_objects, "plain")
    named = [{_normalise(key): value for key, value in row.items()} for row in rows]
    ragged = _rows_unlike_the_first(named)
    if ragged:
        raise BarFileError(ragged, "plain")
    frame = pd.DataFrame([{"ts" if key in JSON_TS_NAMES else key: value
                           for key, value in row.items()} for row in named])
    columns = _map_columns(list(frame.columns), "plain", ("ts",))
    return _finish([_validate(_select(frame, columns), 1, daily)], "plain")


def _rows_unlike_the_first(rows: list[dict[str, Any]]) -> list[BarRowError]:
    """JSON rows whose fields differ from the first row's (which plays the CSV header)."""
    fields = rows[0].keys()
    errors = []
    for number, row in enumerate(rows[1:], start=2):
        if row.keys() == fields:
            continue
        missing = [name for name in fields if name not in row]
        extra = [name for name in row if name not in fields]
        parts = ([f"missing field(s) {', '.join(missing)}"] * bool(missing)
                 + [f"extra field(s) {', '.join(extra)}"] * bool(extra))
        errors.append(BarRowError(number, "; ".join(parts) + " (row 1 has "
                                  f"{', '.join(fields)})"))
    return errors


def _is_daily(timeframe: str) -> bool:
    if timeframe not in TIMEFRAMES:
        raise BarFileError.whole_file(
            f"unknown timeframe {timeframe!r}: use one of {', '.join(TIMEFRAMES)}")
    return timeframe in DAILY_TIMEFRAMES


def _check_row_count(rows: int) -> None:
    if rows > MAX_ROWS:
        raise BarFileError.whole_file(f"too many rows: {rows:,} (at most {MAX_ROWS:,} per file)")


def _read_csv(data: bytes, daily: bool, progress: Progress | None) -> ParsedBars:
    total = data.count(b"\n") + (0 if data.endswith(b"\n") else 1) - 1
    _check_row_count(total)
    options: dict[str, Any] = {"encoding": "utf-8-sig", "index_col": False}
    try:
        header = list(pd.read_csv(io.BytesIO(data), nrows=0, **options).columns)
        ragged = _ragged_lines(data, len(header))
        if ragged:
            raise BarFileError(ragged, _guess_layout(header))
        layout = _guess_layout(header)
        columns = _map_columns(header, layout, TS_NAMES[layout])
        # The C reader parses numbers (fast); a column holding any other text in a chunk comes
        # back as text and is checked value by value. Only empty fields count as missing.
        reader = pd.read_csv(io.BytesIO(data), usecols=list(columns.values()),
                             keep_default_na=False, na_values=[""], skip_blank_lines=False,
                             chunksize=CSV_CHUNK_ROWS, **options)
        batches, done = [], 0
        for chunk in reader:
            if progress and not batches:
                progress(0, total)
            batches.append(_validate(_select(chunk, columns), done + 2, daily))
            done += len(chunk)
            _check_row_count(done)
            if progress:
                progress(done, max(total, done))
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BarFileError.whole_file(f"not a readable CSV file: {exc}") from None
    except UnicodeDecodeError:
        raise BarFileError.whole_file("not a UTF-8 text file") from None
    return _finish(batches, layout)


def _ragged_lines(data: bytes, width: int) -> list[BarRowError]:
    """Lines with more or fewer fields than the header's `width` (blank lines aside).

    pandas would fill a missing field with an empty value (a missing volume becomes 0) and drop
    an extra one with a mere warning. Counting commas is fast; a file with quotes, where a
    comma may be part of a value, is read with the csv module instead (slower).
    """
    counts = _quoted_field_counts(data, width) if b'"' in data else _field_counts(data, width)
    return [BarRowError(line, f"{count} fields where the header has {width}")
            for line, count in counts]


def _field_counts(data: bytes, width: int) -> list[tuple[int, int]]:
    """(line, fields) of the non-blank lines after the header that do not have `width`
    fields, counted by commas, a batch of lines at a time (memory stays bounded)."""
    found, first_line = [], 1
    stream = io.BytesIO(data)
    while batch := stream.readlines(_LINE_BATCH_BYTES):
        fields = np.fromiter(map(bytes.count, batch, itertools.repeat(b",")), np.int64,
                             len(batch)) + 1
        found += [(first_line + int(i), int(fields[i])) for i in np.flatnonzero(fields != width)
                  if first_line + i > 1 and batch[i].strip()]
        first_line += len(batch)
    return found


def _quoted_field_counts(data: bytes, width: int) -> list[tuple[int, int]]:
    """As `_field_counts`, for a file with quoted values (one record per line)."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", errors="replace",
                            newline="")
    reader = csv.reader(text)
    next(reader, None)
    return [(reader.line_num, len(row)) for row in reader
            if len(row) != width and "".join(row).strip()]


def _read_parquet(data: bytes, daily: bool, progress: Progress | None) -> ParsedBars:
    try:
        _check_row_count(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)
        frame = pd.read_parquet(io.BytesIO(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BarFileError.whole_file(f"not a readable Parquet file: {exc}") from None
    if isinstance(frame.columns, pd.MultiIndex):  # yfinance: (field, ticker) columns
        frame.columns = frame.columns.get_level_values(0)
    if frame.columns.duplicated().any():
        raise BarFileError.whole_file("repeated column names: one symbol per file, please")
    name = frame.index.name or "ts"
    if isinstance(frame.index, pd.DatetimeIndex) or frame.index.name is not None:
        frame = frame.reset_index(names=name) if name not in frame.columns else frame
    layout = _guess_layout(list(frame.columns))
    columns = _map_columns(list(frame.columns), layout, TS_NAMES[layout], first_is_ts=True)
    batch = _validate(_select(frame, columns), 1, daily)
    if progress:
        progress(len(frame), len(frame))
    return _finish([batch], layout)


def _normalise(name: object) -> str:
    return " ".join(str(name).replace("\ufeff", "").replace("_", " ").split()).lower()


def _guess_layout(columns: Sequence[object]) -> str:
    names = {_normalise(c) for c in columns}
    if "adj close" in names:
        return "yahoo"
    return "tradingview" if "time" in names else "plain"


def _map_columns(columns: list[Any], layout: str, ts_names: Sequence[str], *,
                 first_is_ts: bool = False) -> dict[str, Any]:
    """Bar field -> source column; volume may be absent. `first_is_ts`: fall back to column 0."""
    by_name: dict[str, Any] = {}
    for column in columns:
        by_name.setdefault(_normalise(column), column)
    ts = next((by_name[n] for n in ts_names if n in by_name), None)
    if ts is None and first_is_ts and columns and _normalise(columns[0]) not in BAR_COLUMNS:
        ts = columns[0]
    mapping = {"ts": ts, **{field: by_name.get(field) for field in BAR_COLUMNS[1:]}}
    missing = ["|".join(ts_names) if field == "ts" else field
               for field, column in mapping.items() if column is None and field != "volume"]
    if missing:
        raise BarFileError.whole_file(
            f"missing column(s) {', '.join(missing)} for the {layout} layout; found columns: "
            f"{', '.join(map(str, columns)) or 'none'}; supported layouts: {SUPPORTED_LAYOUTS}",
            layout)
    return {field: column for field, column in mapping.items() if column is not None}


def _select(frame: pd.DataFrame, columns: dict[str, Any]) -> pd.DataFrame:
    """The source columns as BAR_COLUMNS: text stripped (empty = missing), volume maybe absent."""
    raw = pd.DataFrame({field: frame[c].reset_index(drop=True) for field, c in columns.items()})
    for field in raw:
        column = raw[field]
        if not (pd.api.types.is_numeric_dtype(column)
                or pd.api.types.is_datetime64_any_dtype(column)):
            text = column.astype("str").str.strip()
            raw[field] = text.mask(text == "")
    return raw.reindex(columns=list(BAR_COLUMNS))


def _validate(raw: pd.DataFrame, first_line: int, daily: bool) -> _Batch:
    """Check every row of a chunk: the rows that pass (with their line) and the errors."""
    lines = np.arange(first_line, first_line + len(raw))
    null = np.logical_and.reduce([_says_null(raw[c]) for c in PRICES])
    # Yahoo writes "null" in every field of a day without data: one message, not five.
    null_errors = [BarRowError(int(line), "no prices (a 'null' row)") for line in lines[null]]
    keep = ~(null | raw.isna().all(axis=1).to_numpy())
    raw, lines = raw[keep].reset_index(drop=True), lines[keep]
    problems = _Problems(lines)
    ts = _timestamps(raw["ts"], daily, problems)
    values = {c: _numbers(raw[c], c, problems) for c in BAR_COLUMNS[1:]}
    _check_ranges(raw, values, problems)
    good = ~problems.bad
    bars = pd.DataFrame({"ts": ts.array[good], **{c: v[good] for c, v in values.items()},
                         "line": lines[good]})
    return bars, null_errors + problems.errors()


def _says_null(column: pd.Series) -> np.ndarray:
    if not pd.api.types.is_string_dtype(column):
        return np.zeros(len(column), dtype=bool)
    return (column.str.lower() == "null").fillna(False).to_numpy(dtype=bool)


class _Problems:
    """Messages for the bad rows of one chunk, gathered check by check, reported per line."""

    def __init__(self, lines: np.ndarray) -> None:
        self.lines = lines
        self.bad = np.zeros(len(lines), dtype=bool)
        self.parts: list[pd.DataFrame] = []

    def add(self, mask: np.ndarray, template: str, *columns: pd.Series) -> None:
        """Record `template` for the flagged rows, each {} filled with that row's value."""
        if not mask.any():
            return
        self.bad |= mask
        first, *rest = template.split("{}")
        message = np.full(int(mask.sum()), first, dtype=object)
        for column, piece in zip(columns, rest, strict=True):
            message = message + column[mask].astype(str).to_numpy(dtype=object) + piece
        self.parts.append(pd.DataFrame({"line": self.lines[mask], "message": message}))

    def errors(self) -> list[BarRowError]:
        """One error per bad line, its messages joined in check order."""
        if not self.parts:
            return []
        table = pd.concat(self.parts, ignore_index=True).sort_values("line", kind="stable")
        joined = table.groupby("line")["message"].agg("; ".join)
        return [BarRowError(int(line), str(message)) for line, message in joined.items()]


def _timestamps(column: pd.Series, daily: bool, problems: _Problems) -> pd.Series:
    missing = column.isna().to_numpy()
    if pd.api.types.is_datetime64_any_dtype(column):
        ts = _from_datetimes(column, daily)
    elif pd.api.types.is_numeric_dtype(column):
        ts = _from_unix(column.astype(np.float64), daily)
    else:
        is_number = column.str.fullmatch(_NUMBER).fillna(False).astype(bool)
        ts = _from_iso(column.mask(is_number), daily)
        if is_number.any():
            ts[is_number] = _from_unix(pd.to_numeric(column[is_number]).astype(float), daily)
    unparseable = ts.isna().to_numpy() & ~missing
    outside = ((ts < _EARLIEST) | (ts >= _LATEST)).to_numpy(dtype=bool)
    problems.add(missing, "missing date")
    problems.add(unparseable, "unparseable date '{}'", column)
    problems.add(outside, "date out of range '{}'", column)
    return ts.mask(outside).astype(TS_DTYPE)


def _from_unix(seconds: pd.Series, daily: bool) -> pd.Series:
    seconds = seconds.where(seconds.abs() < _MAX_UNIX_SECONDS)
    ts = pd.to_datetime(seconds, unit="s", utc=True).astype(_WIDE_TS)
    return ts.dt.floor("D") if daily else ts


def _from_iso(text: pd.Series, daily: bool) -> pd.Series:
    instant = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce").astype(_WIDE_TS)
    if not daily:
        return instant
    # The date as written whatever the offset: "2024-01-02T00:00-05:00" is the 2024-01-02 bar.
    day = pd.to_datetime(text.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    return day.dt.tz_localize("UTC").astype(_WIDE_TS).where(instant.notna())


def _from_datetimes(column: pd.Series, daily: bool) -> pd.Series:
    if column.dt.tz is None:
        column = column.dt.tz_localize("UTC")
    elif daily:  # the local date, as for ISO text with an offset
        column = column.dt.tz_localize(None).dt.tz_localize("UTC")
    return (column.dt.floor("D") if daily else column).dt.tz_convert("UTC").astype(_WIDE_TS)


def _numbers(column: pd.Series, name: str, problems: _Problems) -> np.ndarray:
    """The column as float64 (NaN where bad; missing volume is 0), recording every problem."""
    missing = column.isna().to_numpy()
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64, na_value=np.nan,
                                                              copy=True)
    unreadable = np.isnan(values) & ~missing
    nan_text = np.zeros(len(values), dtype=bool)
    if unreadable.any():
        nan_text[unreadable] = column[unreadable].str.lower().isin(("nan", "+nan", "-nan"))
    non_finite = np.isinf(values) | nan_text
    volume = name == "volume"
    negative = np.isfinite(values) & (values < 0 if volume else values <= 0)
    if not volume:
        problems.add(missing, f"missing {name}")
    problems.add(unreadable & ~nan_text, f"non-numeric {name} '{{}}'", column)
    problems.add(non_finite, f"non-finite {name} {{}}", column)
    problems.add(negative, ("negative" if volume else "non-positive") + f" {name} {{}}", column)
    values[non_finite | negative] = np.nan
    values[missing] = 0.0 if volume else np.nan
    return values


def _check_ranges(raw: pd.DataFrame, values: dict[str, np.ndarray], problems: _Problems) -> None:
    """High must be the highest price of the bar and low the lowest."""
    o, h, low, c = (values[name] for name in PRICES)
    crossed = h < low
    problems.add(crossed, "high {} is below low {}", raw["high"], raw["low"])
    ok = ~crossed  # a crossed bar already says all there is to say
    problems.add(ok & (o >= c) & (h < o), "high {} is below open {}", raw["high"], raw["open"])
    problems.add(ok & (o < c) & (h < c), "high {} is below close {}", raw["high"], raw["close"])
    problems.add(ok & (o <= c) & (low > o), "low {} is above open {}", raw["low"], raw["open"])
    problems.add(ok & (o > c) & (low > c), "low {} is above close {}", raw["low"], raw["close"])


def _finish(batches: list[_Batch], layout: str) -> ParsedBars:
    """Merge checked chunks, resolve repeated timestamps, refuse the file if anything is bad."""
    errors = [error for _, chunk_errors in batches for error in chunk_errors]
    bars = pd.concat([chunk for chunk, _ in batches], ignore_index=True) if batches else None
    if bars is None or (bars.empty and not errors):
        raise BarFileError.whole_file("the file has no bars, only a header", layout)
    bars, dropped, conflicts = _drop_duplicates(bars)
    if errors or conflicts:
        raise BarFileError(sorted(errors + conflicts, key=lambda e: e.line), layout)
    frame = bars[list(BAR_COLUMNS)].reset_index(drop=True)
    return ParsedBars(layout=layout, frame=frame.astype({"ts": TS_DTYPE}),
                      dropped_duplicates=dropped)


def _drop_duplicates(bars: pd.DataFrame) -> tuple[pd.DataFrame, int, list[BarRowError]]:
    """Sorted bars without exact repeats, their count, and errors for conflicting repeats."""
    if bars["ts"].is_monotonic_increasing and bars["ts"].is_unique:
        return bars, 0, []
    bars = bars.sort_values("ts", kind="stable")  # stable: the earlier line stays first
    repeat = bars.duplicated("ts").to_numpy()
    values = list(BAR_COLUMNS[1:])
    first = bars.groupby("ts")[[*values, "line"]].transform("first")
    same = (bars[values] == first[values]).all(axis=1).to_numpy()
    conflict = repeat & ~same
    errors = [BarRowError(int(line), f"duplicate of line {int(earlier)} with different values")
              for line, earlier in zip(bars["line"].to_numpy()[conflict],
                                       first["line"].to_numpy()[conflict], strict=True)]
    return bars[~repeat], int((repeat & same).sum()), errors
