"""The fast path stays behind repositories: DBAPI connections, pipelines and driver
statements appear only in repository modules and the plumbing (driver.py, db.py,
batching.py); handlers reach the database through dependencies, not `app.state`."""

from __future__ import annotations

import re
from pathlib import Path

import tradeloop

SRC = Path(tradeloop.__file__).parent
PLUMBING = {"driver.py", "db.py", "batching.py"}
FAST_PATH = re.compile(r"\bDriverConnection\b|\.pipeline\(|\bStatement\(")
# Where the app's state is set up and handed to the named dependencies (deps.py).
COMPOSITION = {"app.py", "deps.py"}


def sources() -> list[Path]:
    return sorted(path for path in SRC.rglob("*.py") if "migrations" not in path.parts)


def test_driver_connections_only_in_repositories_and_plumbing() -> None:
    offenders = [str(path.relative_to(SRC)) for path in sources()
                 if FAST_PATH.search(path.read_text())
                 and path.name != "repository.py" and path.name not in PLUMBING]
    assert offenders == []


def test_handlers_take_the_database_from_dependencies() -> None:
    offenders = [str(path.relative_to(SRC)) for path in sources()
                 if path.name not in COMPOSITION
                 and re.search(r"app\.state\.(db|settings)\b", path.read_text())]
    assert offenders == []
