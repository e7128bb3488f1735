"""The migration chain: upgrade head → downgrade base → upgrade head, on both databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from tests.conftest import fresh_postgres_database
from tradeloop import migrate
from tradeloop.db import Base, create_db_engine
from tradeloop.domains import load_models

MIGRATION_FILES = sorted((Path(migrate.__file__).parent / "migrations" / "versions").glob("*.py"))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrations.db'}"
    return fresh_postgres_database("migrations")


def tables(url: str) -> set[str]:
    engine = create_db_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_round_trip(empty_database_url: str) -> None:
    load_models()
    migrate.upgrade(empty_database_url)
    assert tables(empty_database_url) == set(Base.metadata.tables)
    migrate.downgrade(empty_database_url, "base")
    assert tables(empty_database_url) == set()
    migrate.upgrade(empty_database_url)
    assert tables(empty_database_url) == set(Base.metadata.tables)
    engine = create_db_engine(empty_database_url)
    try:
        assert migrate.is_up_to_date(engine)
    finally:
        engine.dispose()


def test_migration_files_have_dated_names_and_downgrades() -> None:
    assert MIGRATION_FILES
    for path in MIGRATION_FILES:
        assert path.name[:15].replace("-", "").isdigit(), path.name
        source = path.read_text()
        assert "def downgrade() -> None:" in source
        assert "def downgrade() -> None:\n    pass" not in source, f"{path.name} cannot downgrade"


def test_models_match_migrations(tmp_path: Path) -> None:
    """Autogenerate finds nothing to add: every model change has its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    load_models()
    url = f"sqlite:///{tmp_path / 'cmp.db'}"
    migrate.upgrade(url)
    engine = create_db_engine(url)
    try:
        with engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
