"""Types every request and response schema shares, so that an input means the same thing on
every endpoint (docs/api.md, "Dates, numbers and decimals"):

* `UTCTimestamp`: every date or time in a body, query or path. `YYYY-MM-DD`, ISO 8601 with
  `Z` or an offset, a naive ISO datetime (taken as UTC) or unix seconds; always UTC once
  parsed, and within [EARLIEST, LATEST) — the range bar files accept too.
* `Offset`, `Limit`, `Version`, `Count`: the integers of queries and paths, with documented
  ranges that every database column and driver can hold.
* `PlainDecimal`: a decimal of an answer, written in positional notation ("0", "0.000135"),
  never in exponent form ("0E-12").
* `non_finite_numbers`, `strings_with_nul`: where a parsed JSON document holds a value no
  column stores faithfully (NaN or an infinity; a NUL character).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainSerializer

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)  # exclusive
# PostgreSQL's `integer`, the type of version columns; offsets beyond it find nothing anyway.
MAX_INT32 = 2**31 - 1
MAX_PAGE_SIZE = 500


def as_utc(value: datetime) -> datetime:
    """`value` in UTC (naive means UTC); ValueError outside [EARLIEST, LATEST)."""
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # the offset pushes it past year 1 or 9999
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        last_day = LATEST - timedelta(days=1)
        raise ValueError(f"must be between {EARLIEST:%Y-%m-%d} and {last_day:%Y-%m-%d} (UTC)")
    return utc


UTCTimestamp = Annotated[datetime, AfterValidator(as_utc)]

Offset = Annotated[int, Field(ge=0, le=MAX_INT32, description="Rows to skip")]
Limit = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE, description="Rows per page")]
Version = Annotated[int, Field(ge=1, le=MAX_INT32, description="A version number (1..n)")]
Count = Annotated[int, Field(ge=0, le=MAX_INT32)]


def plain_decimal(value: Decimal) -> str:
    """`value` in positional notation without trailing zeros: "0", "0.000135", "1500"."""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")  # exact: no rounding to the context's precision
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


PlainDecimal = Annotated[Decimal, PlainSerializer(plain_decimal, return_type=str,
                                                  when_used="json")]


def locations_where(document: Any, is_bad: Callable[[Any], bool]) -> list[tuple[str | int, ...]]:
    """The locations (keys and indices) of every value, or object key, of a parsed JSON
    document for which `is_bad` holds."""
    found: list[tuple[str | int, ...]] = []
    pending: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while pending:  # iterative: a deeply nested document must not exhaust the stack
        location, value = pending.pop()
        if is_bad(value):
            found.append(location)
        elif isinstance(value, dict):
            found.extend((*location, key) for key in value if is_bad(key))
            pending.extend(((*location, key), item) for key, item in value.items())
        elif isinstance(value, list):
            pending.extend(((*location, index), item) for index, item in enumerate(value))
    return sorted(found, key=str)


def non_finite_numbers(document: Any) -> list[tuple[str | int, ...]]:
    """Where a parsed JSON document holds NaN or an infinity. Python's JSON parser reads
    `NaN`, `Infinity` and numbers beyond ±1.8e308 (`1e400`) as such floats, which no column
    stores faithfully."""
    return locations_where(document, _is_non_finite)


def strings_with_nul(document: Any) -> list[tuple[str | int, ...]]:
    """Where a parsed JSON document holds a string (or key) with a NUL character, which
    PostgreSQL's text and jsonb refuse while SQLite stores it: refused on both, alike."""
    return locations_where(document, _has_nul)


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _has_nul(value: Any) -> bool:
    return isinstance(value, str) and "\x00" in value
