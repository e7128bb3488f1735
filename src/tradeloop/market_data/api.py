"""Market data API (SPEC §4): push or upload bars (admins), list series and bars (anyone)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from tradeloop.accounts.dependencies import CurrentUser, DetachedAdmin
from tradeloop.deps import DatabaseDep, SessionDep
from tradeloop.errors import AppError, FieldValidationError, error_responses, validation_fields
from tradeloop.market_data import service
from tradeloop.market_data.schemas import (
    BarList,
    BarRead,
    BarRowsImport,
    BarSeriesList,
    BarSeriesRead,
    ImportResultRead,
)
from tradeloop.schema_types import UTCTimestamp

router = APIRouter(prefix="/api/v1/bars", tags=["market data"])

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
_UPLOAD_DOC: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": BarRowsImport.model_json_schema()},
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "symbol"],
        "properties": {"file": {"type": "string", "format": "binary"},
                       "symbol": {"type": "string"},
                       "timeframe": {"type": "string", "default": "1d"}}}},
}}}


async def read_upload(request: Request) -> FormData | bytes:
    """The request's multipart form (the file spooled to disk) or its raw JSON bytes.

    Reading the body is I/O and stays on the event loop; parsing it (JSON, CSV, Parquet) and
    writing the bars is CPU and database work, done by the plain `def` handler on a worker
    thread. Declared after the admin check, so only an admin's body is ever read.
    """
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        return await request.form(max_files=1, max_fields=10)
    return await request.body()


@router.post("", status_code=status.HTTP_201_CREATED, openapi_extra=_UPLOAD_DOC,
             responses=error_responses(400, 408, 413, 422))
def import_bars(admin: DetachedAdmin, upload: Annotated[FormData | bytes, Depends(read_upload)],
                db: DatabaseDep) -> ImportResultRead:
    """Import bars as JSON rows or a CSV/Parquet upload; all rows or none (422 lists bad rows)."""
    if isinstance(upload, FormData):
        symbol, timeframe, parsed = _parsed_upload(upload)
    else:
        body = _rows_body(_json(upload))
        symbol, timeframe = body.symbol, body.timeframe
        parsed = service.parse_rows(body.bars, timeframe=timeframe)
    # Parsed outside any transaction: on SQLite the write lock is held for the write alone.
    with db.unit_of_work() as session:
        result = service.import_bars(session=session, symbol=symbol, timeframe=timeframe,
                                     parsed=parsed, source=f"api:{admin.email}")
    return result


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise FieldValidationError([{"field": "body", "message": "send JSON rows or a "
                                     "multipart upload", "type": "json_invalid"}]) from None


def _rows_body(payload: Any) -> BarRowsImport:
    try:
        return BarRowsImport.model_validate(payload)
    except ValidationError as exc:
        raise FieldValidationError(validation_fields(exc.errors())) from None


def _parsed_upload(form: FormData) -> tuple[str, str, Any]:
    upload, symbol = form.get("file"), form.get("symbol")
    timeframe = str(form.get("timeframe") or "1d")
    if not isinstance(upload, UploadFile) or not isinstance(symbol, str) or not symbol.strip():
        raise FieldValidationError([
            {"field": "file", "message": "attach a CSV or Parquet file", "type": "missing"},
            {"field": "symbol", "message": "name the symbol these bars belong to",
             "type": "missing"}])
    if upload.size is not None and upload.size > MAX_UPLOAD_BYTES:
        raise AppError(f"Upload is larger than {MAX_UPLOAD_BYTES // 2**20} MiB",
                       code="payload_too_large")
    parsed = service.parse_bars_file(upload.file, filename=upload.filename or "upload.csv",
                                     timeframe=timeframe)
    return symbol, timeframe, parsed


@router.get("/series")
def list_series(user: CurrentUser, session: SessionDep,
                symbol: str | None = None) -> BarSeriesList:
    """Every stored (symbol, timeframe): range, row count, source, synthetic or not."""
    rows = service.list_series(session=session, symbol=symbol)
    return BarSeriesList(series=[BarSeriesRead.model_validate(r) for r in rows])


@router.get("")
def list_bars(user: CurrentUser, session: SessionDep, symbol: str, timeframe: str = "1d",
              start: UTCTimestamp | None = None, end: UTCTimestamp | None = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 500) -> BarList:
    """Bars of one series in [start, end], the most recent `limit` of them, oldest first."""
    bars = service.load_bars(session=session, symbol=symbol, timeframe=timeframe, start=start,
                             end=end, limit=limit)
    rows = [BarRead(ts=service.utc_datetime(ts), open=o, high=h, low=lo, close=c, volume=v)
            for ts, o, h, lo, c, v in zip(bars.ts, bars.open, bars.high, bars.low, bars.close,
                                          bars.volume, strict=True)]
    return BarList(symbol=bars.symbol, timeframe=timeframe, bars=rows)
