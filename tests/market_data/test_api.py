"""Bars API and import service: layouts end to end, all-or-nothing, idempotent re-imports."""

from __future__ import annotations

import io

import pandas as pd
from fastapi.testclient import TestClient

from tradeloop.db import Database
from tradeloop.market_data import service
from tradeloop.market_data.bar_files import ParsedBars

BASE = "/api/v1/bars"
DATES = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
ROWS = [(187.15, 188.44, 183.89, 185.64, 82488700), (184.22, 185.88, 183.43, 184.25, 58414500),
        (182.15, 183.09, 180.88, 181.91, 71983600), (181.99, 182.76, 180.17, 181.18, 62303300)]


def yahoo_csv() -> bytes:
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    lines += [f"{d},{o},{h},{lo},{c},{c * 0.99:.4f},{v}" for d, (o, h, lo, c, v) in
              zip(DATES, ROWS, strict=True)]
    return "\n".join(lines).encode()


def tradingview_csv() -> bytes:
    lines = ["time,open,high,low,close,Volume,MA"]
    for day, (o, h, lo, c, v) in zip(DATES, ROWS, strict=True):
        unix = int(pd.Timestamp(f"{day} 14:30", tz="UTC").timestamp())
        lines.append(f"{unix},{o},{h},{lo},{c},{v},1.0")
    return "\n".join(lines).encode()


def plain_parquet() -> bytes:
    frame = pd.DataFrame(ROWS, columns=["open", "high", "low", "close", "volume"],
                         index=pd.DatetimeIndex(pd.to_datetime(DATES), name="date"))
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def upload(client: TestClient, headers: dict, symbol: str, name: str, content: bytes,
           timeframe: str = "1d"):
    return client.post(BASE, headers=headers, data={"symbol": symbol, "timeframe": timeframe},
                       files={"file": (name, content, "application/octet-stream")})


def stored(client: TestClient, headers: dict, symbol: str) -> list[dict]:
    response = client.get(BASE, params={"symbol": symbol}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["bars"]


class TestImport:
    def test_three_layouts_give_identical_bars(self, client: TestClient, admin: dict) -> None:
        files = {"YHOO": ("y.csv", yahoo_csv()), "TVW": ("tv.csv", tradingview_csv()),
                 "PLN": ("p.parquet", plain_parquet())}
        layouts = {}
        for symbol, (name, content) in files.items():
            response = upload(client, admin, symbol, name, content)
            assert response.status_code == 201, response.text
            layouts[symbol] = response.json()["layout"]
            assert response.json()["inserted"] == 4
        assert layouts == {"YHOO": "yahoo", "TVW": "tradingview", "PLN": "plain"}
        bars = [stored(client, admin, symbol) for symbol in files]
        assert bars[0] == bars[1] == bars[2]
        assert bars[0][0] == {"ts": "2024-01-02T00:00:00Z", "open": 187.15, "high": 188.44,
                              "low": 183.89, "close": 185.64, "volume": 82488700.0}

    def test_json_rows(self, client: TestClient, admin: dict) -> None:
        rows = [{"ts": d, "open": o, "high": h, "low": lo, "close": c, "volume": v}
                for d, (o, h, lo, c, v) in zip(DATES, ROWS, strict=True)]
        response = client.post(BASE, json={"symbol": "json", "bars": rows}, headers=admin)
        assert response.status_code == 201, response.text
        assert response.json()["symbol"] == "JSON"
        upload(client, admin, "YHOO", "y.csv", yahoo_csv())
        assert stored(client, admin, "JSON") == stored(client, admin, "YHOO")

    def test_reimport_changes_nothing(self, client: TestClient, admin: dict) -> None:
        upload(client, admin, "AAPL", "y.csv", yahoo_csv())
        series = client.get(f"{BASE}/series", headers=admin).json()["series"][0]
        again = upload(client, admin, "AAPL", "y.csv", yahoo_csv()).json()
        assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 4)
        assert client.get(f"{BASE}/series", headers=admin).json()["series"][0] == series

    def test_changed_bars_update_and_change_the_fingerprint(self, client: TestClient,
                                                            admin: dict) -> None:
        upload(client, admin, "AAPL", "y.csv", yahoo_csv())
        before = client.get(f"{BASE}/series", headers=admin).json()["series"][0]
        changed = yahoo_csv().replace(b"185.64", b"185.65")
        result = upload(client, admin, "AAPL", "y.csv", changed).json()
        assert (result["inserted"], result["updated"], result["unchanged"]) == (0, 1, 3)
        after = client.get(f"{BASE}/series", headers=admin).json()["series"][0]
        assert after["fingerprint"] != before["fingerprint"] and after["row_count"] == 4

    def test_bad_file_is_refused_whole_with_line_numbers(self, client: TestClient,
                                                         admin: dict) -> None:
        upload(client, admin, "AAPL", "y.csv", yahoo_csv())
        before = stored(client, admin, "AAPL")
        bad = (yahoo_csv().decode() + "\n2024-01-08,180,170,175,176,176,100"
               "\nnot-a-date,1,2,0.5,1,1,5\n2024-01-10,1,2,0.5,1,1,-5\n").encode()
        response = upload(client, admin, "AAPL", "y.csv", bad)
        assert response.status_code == 422
        errors = response.json()["error"]["details"]["errors"]
        assert [e["line"] for e in errors] == [6, 7, 8]
        assert stored(client, admin, "AAPL") == before

    def test_ragged_csv_rows_are_refused_not_padded_or_cut(self, client: TestClient,
                                                           admin: dict) -> None:
        # A missing field was imported as volume 0, an extra one silently dropped.
        lines = yahoo_csv().decode().split("\n")
        lines[2] = lines[2].rsplit(",", 1)[0]
        lines[4] += ",7"
        response = upload(client, admin, "RAG", "y.csv", "\n".join(lines).encode())
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"]["errors"] == [
            {"line": 3, "message": "6 fields where the header has 7"},
            {"line": 5, "message": "8 fields where the header has 7"}]
        assert client.get(f"{BASE}/series", params={"symbol": "RAG"},
                          headers=admin).json()["series"] == []

    def test_ragged_json_rows_are_refused(self, client: TestClient, admin: dict) -> None:
        rows = [{"ts": d, "open": o, "high": h, "low": lo, "close": c, "volume": v}
                for d, (o, h, lo, c, v) in zip(DATES, ROWS, strict=True)]
        del rows[1]["volume"]
        rows[3]["vwap"] = 181.5
        response = client.post(BASE, json={"symbol": "RAG", "bars": rows}, headers=admin)
        assert response.status_code == 422, response.text
        fields = "(row 1 has ts, open, high, low, close, volume)"
        assert response.json()["error"]["details"]["errors"] == [
            {"line": 2, "message": f"missing field(s) volume {fields}"},
            {"line": 4, "message": f"extra field(s) vwap {fields}"}]
        assert client.get(f"{BASE}/series", params={"symbol": "RAG"},
                          headers=admin).json()["series"] == []

    def test_only_admins_write(self, client: TestClient, alice: dict) -> None:
        response = upload(client, alice, "AAPL", "y.csv", yahoo_csv())
        assert response.status_code == 404
        assert client.get(f"{BASE}/series", headers=alice).json() == {"series": []}

    def test_malformed_bodies(self, client: TestClient, admin: dict) -> None:
        missing = client.post(BASE, json={"bars": []}, headers=admin)
        assert missing.status_code == 422
        assert {f["field"] for f in missing.json()["error"]["details"]["fields"]} == {
            "symbol", "bars"}
        junk = client.post(BASE, content=b"{", headers={**admin,
                                                         "content-type": "application/json"})
        assert junk.status_code == 422
        unknown = upload(client, admin, "AAPL", "bars.xlsx", b"PK..")
        assert unknown.status_code == 422

    def test_missing_series_is_a_clear_error(self, client: TestClient, alice: dict) -> None:
        response = client.get(BASE, params={"symbol": "NOPE"}, headers=alice)
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "no_bars"


def test_real_data_replaces_synthetic_bars(db: Database) -> None:
    synthetic = pd.DataFrame({"ts": pd.date_range("2023-01-01", periods=3, freq="D", tz="UTC"),
                              "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
                              "volume": 10.0})
    real = synthetic.iloc[1:].assign(close=1.6)
    with db.unit_of_work() as session:
        service.import_bars(session=session, symbol="X", timeframe="1d",
                            parsed=ParsedBars("demo", synthetic, 0), source="demo",
                            synthetic=True)
        result = service.import_bars(session=session, symbol="X", timeframe="1d",
                                     parsed=ParsedBars("plain", real, 0), source="file")
        [series] = service.list_series(session=session)
        bars = service.load_bars(session=session, symbol="X", timeframe="1d")
    assert result.replaced_synthetic and result.inserted == 2
    assert not series.synthetic and series.row_count == 2 and list(bars.close) == [1.6, 1.6]
