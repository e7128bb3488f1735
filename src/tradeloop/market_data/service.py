"""Market data: import bars (all-or-nothing upserts), list series, load bars as arrays.

Bars are global market data: any signed-in user reads them, only admins and the CLI write.
An import either writes every row or none (the caller's unit of work), and re-importing the
same rows changes nothing: rows are compared first and only new or changed ones are written.
An import that wrote rows publishes `events.BARS_CHANGED` (delivered after the commit), which
is how positions get marked and live strategies run without this module knowing about them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
from sqlalchemy import Select, and_, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tradeloop.errors import AppError
from tradeloop.events import BARS_CHANGED, publish
from tradeloop.market_data.bar_files import (
    BAR_COLUMNS,
    BarFileError,
    ParsedBars,
    parse_bar_rows,
    read_bars_file,
)
from tradeloop.market_data.models import Bar, BarSeries
from tradeloop.market_data.schemas import ImportResultRead
from tradeloop.market_data.timeframes import TIMEFRAME_SECONDS

PRICE_COLUMNS = BAR_COLUMNS[1:]
WRITE_BATCH_ROWS = 5_000
Progress = Callable[[int, int], None]


class NoBarsError(AppError):
    status_code = 422
    code = "no_bars"


# What an import did: the API answers it as it is (one definition of its fields).
ImportResult = ImportResultRead


@dataclass(frozen=True)
class BarArrays:
    """One series as arrays, oldest first: ts as datetime64[ns] (UTC) and float64 prices."""

    symbol: str
    timeframe: str
    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def as_mapping(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PRICE_COLUMNS}


def normalize_symbol(symbol: str) -> str:
    return symbol.strip().upper()


class InvalidBarsError(AppError):
    status_code = 422
    code = "invalid_bars"

    def __init__(self, exc: BarFileError):
        errors = [{"line": e.line, "message": e.message} for e in exc.errors]
        super().__init__(f"Nothing was imported: {len(errors)} problem(s) found",
                         details={"layout": exc.layout, "errors": errors})


def parse_bars_file(source: Path | bytes | BinaryIO, *, filename: str, timeframe: str,
                    progress: Progress | None = None) -> ParsedBars:
    """Parse and validate a CSV/Parquet file; InvalidBarsError lists every bad row."""
    try:
        return read_bars_file(source, filename=filename, timeframe=timeframe, progress=progress)
    except BarFileError as exc:
        raise InvalidBarsError(exc) from None


def parse_rows(rows: list[dict[str, Any]], *, timeframe: str) -> ParsedBars:
    """Validate JSON rows; InvalidBarsError lists every bad row (line = row number)."""
    try:
        return parse_bar_rows(rows, timeframe=timeframe)
    except BarFileError as exc:
        raise InvalidBarsError(exc) from None


def import_bars(*, session: Session, symbol: str, timeframe: str, parsed: ParsedBars,
                source: str, synthetic: bool = False,
                progress: Progress | None = None) -> ImportResult:
    """Upsert parsed bars into (symbol, timeframe); only new or changed rows are written."""
    symbol = normalize_symbol(symbol)
    frame = parsed.frame
    series = session.get(BarSeries, (symbol, timeframe))
    replaced = bool(series and series.synthetic and not synthetic)
    if replaced:
        # Real data never mixes with generated demo bars: it replaces them.
        session.execute(delete(Bar).where(Bar.symbol == symbol, Bar.timeframe == timeframe))
    new, changed = _diff_against_stored(session, symbol, timeframe, frame)
    to_write = frame[new | changed]
    _write_rows(session, symbol, timeframe, to_write, progress)
    summary = _refresh_series(session, series, symbol, timeframe, source, synthetic,
                              touched=len(to_write) > 0 or series is None)
    if len(to_write):
        _announce_written(session, summary, to_write)
    return ImportResult(
        symbol=symbol, timeframe=timeframe, layout=parsed.layout, received=len(frame),
        inserted=int(new.sum()), updated=int(changed.sum()),
        unchanged=int(len(frame) - new.sum() - changed.sum()),
        dropped_duplicates=parsed.dropped_duplicates, replaced_synthetic=replaced,
        first_ts=summary.first_ts, last_ts=summary.last_ts,
    )


def _diff_against_stored(session: Session, symbol: str, timeframe: str,
                         frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Masks over `frame`: rows not stored yet, and rows stored with other values."""
    if frame.empty:
        empty = np.zeros(0, dtype=bool)
        return empty, empty
    stored = _read_frame(session, _series_query(symbol, timeframe, frame.ts.iloc[0].to_pydatetime(),
                                                frame.ts.iloc[-1].to_pydatetime()))
    incoming_keys = _epoch_ns(frame.ts)
    stored_by_key = stored.set_index(_epoch_ns(stored.ts))
    present = np.isin(incoming_keys, stored_by_key.index.to_numpy())
    changed = np.zeros(len(frame), dtype=bool)
    if present.any():
        old = stored_by_key.loc[incoming_keys[present], list(PRICE_COLUMNS)].to_numpy()
        now = frame[list(PRICE_COLUMNS)].to_numpy()[present]
        changed[present] = (old != now).any(axis=1)
    return ~present, changed


def _write_rows(session: Session, symbol: str, timeframe: str, frame: pd.DataFrame,
                progress: Progress | None) -> None:
    total = len(frame)
    timestamps = frame.ts.dt.to_pydatetime()
    values = frame[list(PRICE_COLUMNS)].to_numpy(dtype=float).tolist()
    for start in range(0, total, WRITE_BATCH_ROWS):
        rows = [{"symbol": symbol, "timeframe": timeframe, "ts": ts,
                 **dict(zip(PRICE_COLUMNS, prices, strict=True))}
                for ts, prices in zip(timestamps[start:start + WRITE_BATCH_ROWS],
                                      values[start:start + WRITE_BATCH_ROWS], strict=True)]
        session.execute(_upsert_statement(session), rows)
        if progress:
            progress(min(start + WRITE_BATCH_ROWS, total), total)
    if progress and total == 0:
        progress(0, 0)


def _upsert_statement(session: Session):  # type: ignore[no-untyped-def]
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" \
        else sqlite_insert
    statement = insert(Bar)
    return statement.on_conflict_do_update(
        index_elements=["symbol", "timeframe", "ts"],
        set_={name: statement.excluded[name] for name in PRICE_COLUMNS})


def _refresh_series(session: Session, series: BarSeries | None, symbol: str, timeframe: str,
                    source: str, synthetic: bool, *, touched: bool) -> BarSeries:
    if series is None:
        series = BarSeries(symbol=symbol, timeframe=timeframe, source=source)
        session.add(series)
    if not touched:
        return series
    session.flush()
    stored = load_bars(session=session, symbol=symbol, timeframe=timeframe, required=False)
    series.source = source[:200]
    series.synthetic = synthetic
    series.row_count = len(stored)
    series.first_ts = utc_datetime(stored.ts[0]) if len(stored) else None
    series.last_ts = utc_datetime(stored.ts[-1]) if len(stored) else None
    series.fingerprint = fingerprint_arrays(stored)
    session.flush()
    return series


def _announce_written(session: Session, series: BarSeries, written: pd.DataFrame) -> None:
    """Publish BARS_CHANGED for the rows this import wrote (sent after the commit)."""
    assert series.last_ts is not None  # rows were written, so the series has a last bar
    publish(session, BARS_CHANGED, symbol=series.symbol, timeframe=series.timeframe,
            first_written=written.ts.min().isoformat(),
            last_written=written.ts.max().isoformat(),
            series_last=series.last_ts.isoformat())


def fingerprint_arrays(bars: BarArrays) -> str:
    """SHA-256 over every timestamp and value: equal iff the stored bars are equal."""
    digest = hashlib.sha256()
    digest.update(bars.ts.astype("datetime64[ns]").astype(np.int64).tobytes())
    for name in PRICE_COLUMNS:
        digest.update(np.ascontiguousarray(getattr(bars, name), dtype=np.float64).tobytes())
    return digest.hexdigest()


def _series_query(symbol: str, timeframe: str, start: datetime | None,
                  end: datetime | None) -> Select[Any]:
    criteria = [Bar.symbol == symbol, Bar.timeframe == timeframe]
    if start is not None:
        criteria.append(Bar.ts >= start)
    if end is not None:
        criteria.append(Bar.ts <= end)
    return (select(Bar.ts, Bar.open, Bar.high, Bar.low, Bar.close, Bar.volume)
            .where(and_(*criteria)).order_by(Bar.ts))


def _read_frame(session: Session, query: Select[Any]) -> pd.DataFrame:
    rows = session.execute(query).all()
    frame = pd.DataFrame(rows, columns=list(BAR_COLUMNS))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _epoch_ns(timestamps: pd.Series) -> np.ndarray:
    return timestamps.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]") \
        .to_numpy().astype(np.int64)


def utc_datetime(value: np.datetime64) -> datetime:
    """A stored bar timestamp (datetime64, UTC) as an aware datetime."""
    return pd.Timestamp(value).tz_localize("UTC").to_pydatetime()


def load_bars(*, session: Session, symbol: str, timeframe: str, start: datetime | None = None,
              end: datetime | None = None, limit: int | None = None,
              required: bool = True) -> BarArrays:
    """One series in [start, end] as arrays; `limit` keeps the most recent bars."""
    symbol = normalize_symbol(symbol)
    frame = _read_frame(session, _series_query(symbol, timeframe, start, end))
    if limit is not None:
        frame = frame.iloc[-limit:]
    if required and frame.empty:
        raise NoBarsError(
            f"No {timeframe} bars for {symbol}"
            + (" in the requested range" if start or end else "")
            + f"; import them with `tradeloop data import FILE --symbol {symbol} "
            f"--timeframe {timeframe}` or POST /api/v1/bars",
            details={"missing": [symbol], "timeframe": timeframe})
    ts = frame.ts.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    return BarArrays(symbol, timeframe, ts,
                     *(frame[name].to_numpy(dtype=np.float64) for name in PRICE_COLUMNS))


def list_series(*, session: Session, symbol: str | None = None) -> Sequence[BarSeries]:
    """Every stored (symbol, timeframe) with its range, count and origin."""
    query = select(BarSeries).order_by(BarSeries.symbol, BarSeries.timeframe)
    if symbol:
        query = query.where(BarSeries.symbol == normalize_symbol(symbol))
    return session.scalars(query).all()


def series_fingerprints(*, session: Session, symbols: Sequence[str],
                        timeframe: str) -> dict[str, str]:
    """The current fingerprint of each symbol's series ('' when it has no bars)."""
    wanted = [normalize_symbol(s) for s in symbols]
    rows = session.scalars(select(BarSeries).where(
        BarSeries.timeframe == timeframe, BarSeries.symbol.in_(wanted))).all()
    found = {row.symbol: row.fingerprint for row in rows}
    return {symbol: found.get(symbol, "") for symbol in wanted}


@dataclass(frozen=True)
class LatestClose:
    """The close of a symbol's freshest stored bar, and which bar it was."""

    symbol: str
    timeframe: str
    ts: datetime
    close: float

    @property
    def bar_end(self) -> datetime:
        """When the bar closed (its open instant plus its length)."""
        return self.ts + timedelta(seconds=TIMEFRAME_SECONDS.get(self.timeframe, 0))


def latest_closes(*, session: Session,
                  symbols: Sequence[str] | None = None) -> dict[str, LatestClose]:
    """Per symbol, the close of the bar that ended last across all its timeframes (a finer
    timeframe wins a tie: its bar is the more recent information); all symbols by default."""
    query = select(BarSeries).where(BarSeries.last_ts.is_not(None))
    if symbols is not None:
        query = query.where(BarSeries.symbol.in_([normalize_symbol(s) for s in symbols]))
    freshest: dict[str, BarSeries] = {}
    for series in session.scalars(query):
        current = freshest.get(series.symbol)
        if current is None or _recency(series) > _recency(current):
            freshest[series.symbol] = series
    found = {}
    for symbol, series in freshest.items():
        assert series.last_ts is not None
        close = session.scalar(select(Bar.close).where(
            Bar.symbol == symbol, Bar.timeframe == series.timeframe, Bar.ts == series.last_ts))
        if close is not None:
            found[symbol] = LatestClose(symbol, series.timeframe, series.last_ts, close)
    return found


def _recency(series: BarSeries) -> tuple[datetime, int]:
    assert series.last_ts is not None
    length = TIMEFRAME_SECONDS.get(series.timeframe, 0)
    return series.last_ts + timedelta(seconds=length), -length
