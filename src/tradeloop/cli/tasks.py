"""`tradeloop tasks`: background tasks and schedules."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from tradeloop.cli.common import (
    console,
    fail,
    open_database,
)
from tradeloop.settings import get_settings

tasks_app = typer.Typer(help="Background tasks and schedules.", no_args_is_help=True)


@tasks_app.command("list")
def tasks_list() -> None:
    """Show declared tasks and their periodic schedules (cron, UTC) with the next run."""
    from tradeloop import domains
    from tradeloop.tasks import load_task_modules, registered_schedules, registered_tasks

    load_task_modules(domains.TASK_MODULES)
    tasks_table = Table("task", "description", title="Tasks")
    for spec in registered_tasks().values():
        tasks_table.add_row(spec.name, spec.description)
    schedules_table = Table("schedule", "task", "cron (UTC)", "next run", title="Schedules")
    for schedule in registered_schedules().values():
        schedules_table.add_row(schedule.name, schedule.task_name, schedule.cron,
                                schedule.next_run().isoformat())
    console.print(tasks_table, schedules_table)


def parse_task_arguments(values: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """`a b key=value` → positional and keyword arguments; JSON values are decoded."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if sep and key.isidentifier():
            kwargs[key] = _decode(raw)
        else:
            args.append(_decode(value))
    return args, kwargs


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


@tasks_app.command("run")
def tasks_run(name: str, arguments: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Run one task now in this process and print its result."""
    from tradeloop import domains
    from tradeloop.logs import configure_logging
    from tradeloop.tasks import load_task_modules, run_task

    settings = get_settings()
    configure_logging(settings.log_level, "console")
    load_task_modules(domains.TASK_MODULES)
    args, kwargs = parse_task_arguments(arguments or [])
    try:
        result = run_task(open_database(settings), name, *args, **kwargs)
    except KeyError as exc:
        raise fail(str(exc.args[0])) from exc
    except TypeError as exc:
        raise fail(f"bad arguments for {name}: {exc}") from exc
    console.print_json(json.dumps(result, default=str))
