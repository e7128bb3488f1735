"""The metric catalogue stands alone: the models build their columns without NumPy."""

from __future__ import annotations

import subprocess
import sys

from tradeloop.backtest.metrics import CATEGORIES, METRICS, compute_metrics
from tradeloop.backtest.metrics.catalogue import LAYOUT, clean_value


def test_models_import_the_catalogue_without_numpy() -> None:
    code = ("import sys, tradeloop.backtest.models; "
            "assert 'numpy' not in sys.modules, 'numpy loaded'; "
            "assert 'tradeloop.backtest.metrics.compute' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_package_still_exports_compute_metrics() -> None:
    from tradeloop.backtest.metrics.compute import compute_metrics as direct

    assert compute_metrics is direct


def test_layout_follows_the_categories_and_every_metric_once() -> None:
    assert [category for category, _ in LAYOUT] == list(CATEGORIES)
    names = [name for _, fields in LAYOUT for name, _ in fields]
    assert names == [spec.name for spec in METRICS]
    assert len(set(names)) == len(names) == 97


def test_clean_value_turns_undefined_into_none() -> None:
    assert clean_value(float("nan"), "float") is None
    assert clean_value(float("inf"), "int") is None
    assert clean_value(3.0, "int") == 3
    assert clean_value(None, "float") is None
