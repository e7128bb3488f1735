"""The `tradeloop` command line: one module per command group.

`server` (seed, serve, worker, beat and the first start), `db`, `backtest`, `data`, `users`
(`tradeloop user`), `tasks` and `prompts`; `common` holds what they share (consoles, the
database, errors, progress bars). The console entry point is `tradeloop.cli:app`.
"""

from __future__ import annotations

import typer

from tradeloop.cli import server
from tradeloop.cli.backtest import backtest_app
from tradeloop.cli.data import data_app
from tradeloop.cli.db import db_app
from tradeloop.cli.prompts import prompts_app
from tradeloop.cli.server import announce_first_start, prepare_database
from tradeloop.cli.tasks import parse_task_arguments, tasks_app
from tradeloop.cli.users import user_app

__all__ = ["announce_first_start", "app", "main", "parse_task_arguments", "prepare_database"]

app = typer.Typer(help="tradeloop: strategies, backtests, live signals and LLM analysis.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(db_app, name="db")
app.add_typer(backtest_app, name="backtest")
app.add_typer(data_app, name="data")
app.add_typer(user_app, name="user")
app.add_typer(tasks_app, name="tasks")
app.add_typer(prompts_app, name="prompts")
for command in (server.seed, server.serve, server.worker, server.beat):
    app.command()(command)


def main() -> None:  # pragma: no cover - console entry point
    """Run the command line as `tradeloop`."""
    app(prog_name="tradeloop")
