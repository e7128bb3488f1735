"""What every command shares: the consoles, the database, errors and progress bars."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from tradeloop.db import Database
from tradeloop.settings import Settings

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def open_database(settings: Settings) -> Database:
    """The database of the settings (the embedded one by default)."""
    return Database.from_url(settings.effective_database_url,
                             connect_timeout_s=settings.db_connect_timeout_s)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print the error on stderr and return the exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def describe(exc: Any) -> str:
    """An AppError as one line: its fields' messages, else its message."""
    fields = exc.details.get("fields") if exc.details else None
    if fields:
        return "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return str(exc.message)


def describe_import_error(exc: Any) -> str:
    """An import's AppError with its first 50 errors by line."""
    errors = exc.details.get("errors") if exc.details else None
    if not errors:
        return describe(exc)
    lines = [f"  line {e['line']}: {e['message']}" for e in errors[:50]]
    more = f"\n  … and {len(errors) - 50} more" if len(errors) > 50 else ""
    return f"{exc.message}\n" + "\n".join(lines) + more


def progress_bar() -> Any:
    """A transient progress bar on stderr (stdout keeps the results)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    console=err_console, transient=True)


def acting_user_id(db: Database, email: str | None) -> Any:
    """The user the CLI acts for: --user EMAIL, else the first admin."""
    from tradeloop.accounts import service as accounts

    with db.unit_of_work() as session:
        user = (accounts.get_user_by_email(session=session, email=email) if email
                else accounts.first_admin(session=session))
        if user is None:
            raise fail(f"no user {email}" if email else
                       "no admin yet: create one with `tradeloop user create --admin`")
        return user.id
