"""`tradeloop db`: database migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeloop import migrate
from tradeloop.cli.common import (
    console,
    open_database,
)
from tradeloop.settings import get_settings

db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    migrate.upgrade(get_settings().effective_database_url, revision)
    console.print(f"database upgraded to {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (`base` empties the schema)."""
    migrate.downgrade(get_settings().effective_database_url, revision)
    console.print(f"database downgraded to {revision}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's revision and whether it is the latest."""
    db = open_database(get_settings())
    current, head = migrate.current_revision(db.engine), migrate.head_revision()
    state = "up to date" if current == head else f"outdated, head is {head}"
    console.print(f"{current or 'empty'} ({state})")


@db_app.command("history")
def db_history() -> None:
    """List every migration, oldest first."""
    for line in migrate.history(get_settings().effective_database_url):
        console.print(line)
