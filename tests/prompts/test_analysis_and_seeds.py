"""The analysis context (indicators checked against TA-Lib), the six seeded templates rendered
with it, idempotent seeding, export/import round trips and the CLI commands."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import talib
import yaml
from typer.testing import CliRunner

from tests.conftest import store_bars
from tradeloop.cli import app
from tradeloop.db import Database
from tradeloop.market_data.service import NoBarsError, load_bars
from tradeloop.prompts import service
from tradeloop.prompts.analysis import RECENT_BARS, analysis_variables
from tradeloop.prompts.files import TemplateFileError, export_templates, import_templates
from tradeloop.prompts.models import PromptTemplate
from tradeloop.prompts.resolution import resolve_prompt
from tradeloop.prompts.seeds import SEED_TEMPLATES, seed_prompt_templates
from tradeloop.prompts.service import SYSTEM, TemplateFilters
from tradeloop.prompts.variables import check_values
from tradeloop.settings import get_settings

OUTPUT_KEYS = ("direction", "entry_price_low", "entry_price_high", "stop_loss",
               "target_conservative", "target_aggressive", "confidence", "reasoning")


@pytest.fixture
def bars(db: Database) -> None:
    store_bars(db, "AAPL", 300, seed=11, drift=0.001)


def context(db: Database, **kwargs: object) -> dict:
    with db.unit_of_work() as session:
        return analysis_variables(session, symbol="aapl", timeframe="1d", **kwargs)  # type: ignore[arg-type]


class TestContext:
    def test_indicators_match_talib(self, db: Database, bars: None) -> None:
        values = context(db)
        with db.unit_of_work() as session:
            series = load_bars(session=session, symbol="AAPL", timeframe="1d", limit=260)
        close, high, low = series.close, series.high, series.low
        i = values["indicators"]
        expected = {
            "sma_20": talib.SMA(close, 20)[-1], "sma_50": talib.SMA(close, 50)[-1],
            "sma_200": talib.SMA(close, 200)[-1], "rsi_14": talib.RSI(close, 14)[-1],
            "atr_14": talib.ATR(high, low, close, 14)[-1],
            "bb_upper": talib.BBANDS(close, 20, 2, 2)[0][-1],
            "bb_lower": talib.BBANDS(close, 20, 2, 2)[2][-1],
            "macd": talib.MACD(close, 12, 26, 9)[0][-1],
            "macd_signal": talib.MACD(close, 12, 26, 9)[1][-1],
        }
        for name, value in expected.items():
            assert i[name] == pytest.approx(value, abs=0.01), name
        assert i["close"] == pytest.approx(close[-1], abs=1e-4)
        assert i["change_pct"] == pytest.approx(100 * (close[-1] / close[-2] - 1), abs=0.01)
        assert i["volume_ratio"] == 1.0  # store_bars writes a constant volume

    def test_shape_levels_and_passthrough(self, db: Database, bars: None) -> None:
        values = context(db, strategy=("sma_cross", {"fast": 10}),
                         market_context={"vix": 14.2}, gex={"zero_gamma": 180.0})
        assert values["symbol"] == "AAPL" and values["timeframe"] == "1d"
        assert len(values["bars"]) == RECENT_BARS
        assert values["bars"][-1]["close"] == values["indicators"]["close"]
        assert values["bars_table"].count("\n") == RECENT_BARS
        close = values["indicators"]["close"]
        levels = values["levels"]
        assert all(level < close for level in levels["support"])
        assert all(level > close for level in levels["resistance"])
        assert levels["support"] == sorted(levels["support"], reverse=True)
        assert levels["low_52w"] <= levels["low_20"] <= close <= levels["high_20"] \
            <= levels["high_52w"]
        assert values["strategy"] == {"name": "sma_cross", "params": {"fast": 10}}
        assert values["market_context"] == {"vix": 14.2} and values["gex"]["zero_gamma"] == 180

    def test_as_of_cuts_the_bars(self, db: Database, bars: None) -> None:
        values = context(db, as_of=datetime(2020, 3, 1, tzinfo=UTC))
        assert values["as_of"].startswith("2020-03-01")
        assert values["indicators"]["sma_200"] is None  # only 61 bars by then
        assert values["indicators"]["sma_50"] is not None

    def test_no_bars_is_a_clear_error(self, db: Database) -> None:
        with pytest.raises(NoBarsError, match="No 1d bars for MSFT"), \
                db.unit_of_work() as session:
            analysis_variables(session, symbol="MSFT", timeframe="1d")


class TestSeeds:
    def test_seeding_is_idempotent_and_keeps_edits(self, db: Database) -> None:
        with db.unit_of_work() as session:
            assert len(seed_prompt_templates(session=session)) == 6
            daily = resolve_prompt(session=session, owner_id=None)
            service.update_template(session=session, actor=SYSTEM,
                                    template_id=daily.template_id,
                                    changes=service.TemplateChanges(name="Renamed"))
            assert seed_prompt_templates(session=session) == []
            rows, total = service.list_templates(session=session, actor=SYSTEM,
                                                 filters=TemplateFilters())
        assert total == 6 and "Renamed" in {row.name for row in rows}

    def test_every_analysis_template_renders_a_real_analysis_request(
            self, db: Database, bars: None) -> None:
        values = context(db, strategy=("sma_cross", {"fast": 10, "slow": 30}),
                         market_context={"spy_trend": "up"}, gex=None)
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
            for seed in SEED_TEMPLATES:
                prompt = resolve_prompt(session=session, owner_id=None,
                                        template_type=seed.template_type,
                                        timeframe=seed.timeframe)
                assert prompt.name == seed.name
                if seed.template_type == "system":
                    assert "JSON" in prompt.render({})
                    continue
                assert check_values(prompt.variables, values) == []
                text = prompt.render(values)
                assert 1500 < len(text) < 8000
                assert "AAPL" in text and str(values["indicators"]["rsi_14"]) in text
                assert values["bars_table"] in text and "spy_trend: up" in text
                assert all(f'"{key}"' in text for key in OUTPUT_KEYS)
                assert "LONG" in text and "NEUTRAL" in text and "None" not in text


class TestFiles:
    def test_export_import_round_trip(self, db: Database, tmp_path: Path) -> None:
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
            written = export_templates(session=session, directory=tmp_path)
        assert len(written) == 6 and len(list(tmp_path.glob("*.j2"))) == 6
        with db.unit_of_work() as session:
            report = import_templates(session=session, directory=tmp_path)
        assert len(report.unchanged) == 6 and not report.created and not report.new_versions

        daily_yaml = next(p for p in written if p.name.startswith("daily-chart"))
        daily_yaml.with_suffix(".j2").write_text("Edited {{ symbol }}\n", encoding="utf-8")
        metadata = yaml.safe_load(daily_yaml.read_text())
        new_id = "7d8f3a52-1111-4c3e-9a55-000000000001"
        copy = tmp_path / "copy.yaml"
        copy.write_text(yaml.safe_dump({**metadata, "id": new_id, "name": "Copy",
                                        "is_default": False}))
        copy.with_suffix(".j2").write_text("Copy of {{ symbol }}", encoding="utf-8")
        with db.unit_of_work() as session:
            report = import_templates(session=session, directory=tmp_path)
            assert report.new_versions == ["Daily Chart Technical Analysis"]
            assert report.created == ["Copy"]
            daily = session.get(PromptTemplate, uuid.UUID(metadata["id"]))
            assert daily is not None and daily.latest_version == 2
            assert service.get_version(session=session, template=daily).template_text == \
                "Edited {{ symbol }}\n"
        with db.unit_of_work() as session:  # idempotent
            again = import_templates(session=session, directory=tmp_path)
        assert not again.created and not again.new_versions

    def test_bad_files_are_reported_by_name(self, db: Database, tmp_path: Path) -> None:
        (tmp_path / "broken.yaml").write_text("id: not-a-uuid\nname: x\ntemplate_type: y\n")
        (tmp_path / "broken.j2").write_text("x")
        with pytest.raises(TemplateFileError, match=r"broken\.yaml: 'id' is not a UUID"), \
                db.unit_of_work() as session:
            import_templates(session=session, directory=tmp_path)


def test_cli_seed_export_and_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
        first = runner.invoke(app, ["seed"])
        assert first.exit_code == 0, first.output
        assert "Daily Chart Technical Analysis" in first.output
        assert "all 6 defaults present" in runner.invoke(app, ["seed"]).output
        exported = runner.invoke(app, ["prompts", "export", str(tmp_path / "out")])
        assert "Exported 6 templates" in exported.output, exported.output
        text = next((tmp_path / "out").glob("weekly-chart*.j2"))
        text.write_text("{{ undeclared_thing }}\n{% if %}")
        failed = runner.invoke(app, ["prompts", "import", str(tmp_path / "out")])
        assert failed.exit_code == 1 and "line 2" in failed.output, failed.output
        text.write_text("Weekly {{ symbol }}")
        imported = runner.invoke(app, ["prompts", "import", str(tmp_path / "out")])
        assert "new versions: 1" in imported.output, imported.output
    finally:
        get_settings.cache_clear()


def test_numpy_is_not_leaking_into_context(db: Database, bars: None) -> None:
    values = context(db)
    leaked = [key for key, value in values["indicators"].items()
              if isinstance(value, np.generic)]
    assert leaked == []


def test_every_server_start_makes_sure_the_defaults_exist(tmp_path: Path) -> None:
    from tests.conftest import make_settings
    from tradeloop import migrate
    from tradeloop.cli import announce_first_start

    settings = make_settings(tmp_path / "data", load_demo_on_first_start=False)
    migrate.upgrade(settings.effective_database_url)
    database = Database.from_url(settings.effective_database_url)
    try:
        announce_first_start(settings, database)
        announce_first_start(settings, database)  # idempotent
        with database.unit_of_work() as session:
            _, total = service.list_templates(session=session, actor=SYSTEM,
                                              filters=TemplateFilters(is_default=True))
        assert total == 6
    finally:
        database.dispose()
