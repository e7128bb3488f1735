"""`tradeloop prompts`: prompt templates as reviewable files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tradeloop.cli.common import (
    console,
    describe_import_error,
    fail,
    open_database,
)
from tradeloop.settings import get_settings

prompts_app = typer.Typer(help="Prompt templates as reviewable files.", no_args_is_help=True)


@prompts_app.command("export")
def prompts_export(directory: Annotated[Path, typer.Argument(file_okay=False)]) -> None:
    """Write every global template as DIR/<name>.j2 (text) + DIR/<name>.yaml (metadata)."""
    from tradeloop.prompts.files import export_templates

    db = open_database(get_settings())
    with db.unit_of_work() as session:
        written = export_templates(session=session, directory=directory)
    console.print(f"Exported {len(written)} templates to {directory}")


@prompts_app.command("import")
def prompts_import(directory: Annotated[Path, typer.Argument(exists=True, file_okay=False)],
                   ) -> None:
    """Create or update global templates from DIR (a changed text becomes a new version)."""
    from tradeloop.errors import AppError
    from tradeloop.prompts.files import TemplateFileError, import_templates

    db = open_database(get_settings())
    try:
        with db.unit_of_work() as session:
            report = import_templates(session=session, directory=directory)
    except TemplateFileError as exc:
        raise fail(str(exc)) from None
    except AppError as exc:  # e.g. a template text with syntax errors (listed by line)
        raise fail(describe_import_error(exc)) from None
    console.print(f"created: {len(report.created)}, new versions: {len(report.new_versions)}, "
                  f"unchanged: {len(report.unchanged)}")
    for name in report.created + report.new_versions:
        console.print(f"  {name}")
