"""Bodies of the GEX API (`/api/v1/gex`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeloop.schema_types import PlainDecimal, UTCTimestamp
from tradeloop.signals.schemas import SignalPrice, Source, Symbol

# |net GEX| stays below 1e24 with at most 4 decimals (the Numeric(28, 4) column: refused,
# not rounded, beyond it); real values are around 1e9-1e11.
MAX_NET_GEX = Decimal(10) ** 24
NetGex = Annotated[Decimal, Field(gt=-MAX_NET_GEX, lt=MAX_NET_GEX, max_digits=28,
                                  decimal_places=4, allow_inf_nan=False)]


class GexIn(BaseModel):
    """One gamma-exposure snapshot from an external source (prices as decimals or strings)."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    as_of: UTCTimestamp = Field(description="When the source computed it (no offset = UTC)")
    net_gex: NetGex = Field(description="Net dealer gamma exposure; > 0 dampened, < 0 amplified")
    gamma_flip: SignalPrice = Field(description="Price where net gamma changes sign")
    call_wall: SignalPrice = Field(description="Strike with the largest call gamma")
    put_wall: SignalPrice = Field(description="Strike with the largest put gamma")
    spot_price: SignalPrice | None = Field(default=None, description="Underlying price then")
    source: Source = "external"

    @model_validator(mode="after")
    def _walls_in_order(self) -> GexIn:
        if self.put_wall > self.call_wall:
            raise ValueError("put_wall must not be above call_wall")
        return self


class GexRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    symbol: str
    as_of: datetime
    net_gex: PlainDecimal
    gamma_flip: PlainDecimal
    call_wall: PlainDecimal
    put_wall: PlainDecimal
    spot_price: PlainDecimal | None
    source: str
    received_at: datetime


class GexList(BaseModel):
    gex: list[GexRead]
    total: int
    limit: int
    offset: int
