"""Alembic, driven from code: upgrade, downgrade, current revision, and schema freshness."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Dated names make the order of migrations readable at a glance.
    config.set_main_option(
        "file_template",
        "%%(year)d-%%(month).2d-%%(day).2d-%%(hour).2d%%(minute).2d_%%(slug)s")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def history(url: str) -> list[str]:
    script = ScriptDirectory.from_config(alembic_config(url))
    return [f"{rev.revision}  {rev.doc}  ({Path(rev.path).name})"
            for rev in reversed(list(script.walk_revisions()))]


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def recreate_postgres_database(url: str, *, drop_only: bool = False) -> None:
    """Drop the PostgreSQL database named in `url` (ending its sessions) and, unless
    `drop_only`, create it empty again. Connects to the server's `postgres` database to do so.
    For tests and benchmarks that need a database of their own."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from tradeloop.db import create_db_engine

    target = make_url(url)
    admin = create_db_engine(target.set(database="postgres").render_as_string(False),
                             isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
            if not drop_only:
                connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()
