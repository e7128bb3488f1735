"""`tradeloop user`: user accounts."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeloop.cli.common import (
    console,
    describe,
    fail,
    open_database,
)
from tradeloop.settings import get_settings

user_app = typer.Typer(help="User accounts.", no_args_is_help=True)


@user_app.command("create")
def user_create(email: Annotated[str, typer.Option(prompt=True)],
                password: Annotated[str, typer.Option(prompt=True, hide_input=True,
                                                      confirmation_prompt=True)],
                admin: bool = False) -> None:
    """Create a user account (confirmed), optionally an admin."""
    from tradeloop.accounts import service as accounts
    from tradeloop.db import utcnow
    from tradeloop.errors import AppError

    db = open_database(get_settings())
    try:
        with db.unit_of_work() as session:
            user = accounts.create_user(session=session, email=email, password=password,
                                        is_admin=admin)
            user.confirmed_at = utcnow()
    except AppError as exc:
        raise fail(describe(exc)) from exc
    console.print(f"created {'admin' if admin else 'user'} {user.email} ({user.id})")
