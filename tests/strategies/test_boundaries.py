"""Imports point one way: backtest may import strategies, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import tradeloop.strategies


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports, at any depth (function-level imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_strategies_does_not_import_backtest() -> None:
    package = Path(tradeloop.strategies.__file__).parent
    offenders = {path.name: sorted(m for m in imported_modules(path)
                                   if m.startswith("tradeloop.backtest"))
                 for path in package.glob("*.py")}
    assert {name: found for name, found in offenders.items() if found} == {}
