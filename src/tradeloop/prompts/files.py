"""`tradeloop prompts export DIR` / `import DIR`: global templates as reviewable files.

Each template becomes two files named after it: `<slug>.j2` (the text of its latest version,
byte for byte) and `<slug>.yaml` (id, name, type, timeframe, language, flags, declared
variables, model config, and its labels for review; labels are not imported, since version
numbers differ between installations). Import matches templates by id: a new id creates the
template (keeping the id, so signals that cite it still resolve), a changed text, variable
list or model config becomes a new version, and an unchanged file changes nothing — running
import twice is the same as running it once.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from tradeloop.prompts import service
from tradeloop.prompts.models import PromptTemplate
from tradeloop.prompts.service import SYSTEM, TemplateChanges, TemplateContent, TemplateFilters

METADATA_KEYS = ("id", "name", "description", "template_type", "timeframe", "language",
                 "is_active", "is_default", "version", "variables", "model_config", "labels")


class TemplateFileError(ValueError):
    """A metadata file that cannot be imported; the message names the file and the field."""


@dataclass
class ImportReport:
    created: list[str] = field(default_factory=list)
    new_versions: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def export_templates(*, session: Session, directory: Path) -> list[Path]:
    """Write every global template to `directory`; returns the metadata files written."""
    directory.mkdir(parents=True, exist_ok=True)
    rows, _ = service.list_templates(session=session, actor=service.Actor(None, "export"),
                                     filters=TemplateFilters(), limit=10_000)
    labels = service.labels_of(session=session, template_ids=[row.id for row in rows])
    written = []
    for row in rows:
        version = service.get_version(session=session, template=row)
        stem = directory / _slug(row)
        stem.with_suffix(".j2").write_text(version.template_text, encoding="utf-8")
        metadata = {
            "id": str(row.id), "name": row.name, "description": row.description,
            "template_type": row.template_type, "timeframe": row.timeframe,
            "language": row.language, "is_active": row.is_active,
            "is_default": row.is_default, "version": row.latest_version,
            "variables": version.variables, "model_config": version.model_config_,
            "labels": labels[row.id]}
        path = stem.with_suffix(".yaml")
        path.write_text(yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True),
                        encoding="utf-8")
        written.append(path)
    return written


def _slug(row: PromptTemplate) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", row.name.lower()).strip("-") or "template"
    return f"{base}-{str(row.id)[:8]}"


def import_templates(*, session: Session, directory: Path) -> ImportReport:
    """Create or update global templates from the files in `directory` (see module doc)."""
    report = ImportReport()
    for path in sorted(directory.glob("*.yaml")):
        metadata = _read_metadata(path)
        text_path = path.with_suffix(".j2")
        if not text_path.exists():
            raise TemplateFileError(f"{path.name}: its text file {text_path.name} is missing")
        text = text_path.read_text(encoding="utf-8")
        _import_one(session, metadata, text, report)
    return report


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise TemplateFileError(f"{path.name}: not valid YAML: {exc}") from None
    if not isinstance(metadata, dict):
        raise TemplateFileError(f"{path.name}: expected a mapping of {', '.join(METADATA_KEYS)}")
    for key in ("id", "name", "template_type"):
        if not metadata.get(key):
            raise TemplateFileError(f"{path.name}: '{key}' is required")
    try:
        metadata["id"] = uuid.UUID(str(metadata["id"]))
    except ValueError:
        raise TemplateFileError(f"{path.name}: 'id' is not a UUID") from None
    return metadata


def _import_one(session: Session, metadata: dict[str, Any], text: str,
                report: ImportReport) -> None:
    existing = session.get(PromptTemplate, metadata["id"])
    content = TemplateContent(text, metadata.get("variables") or [],
                              metadata.get("model_config") or {})
    if existing is None:
        template = _create(session, metadata, content)
        report.created.append(template.name)
    else:
        if existing.user_id is not None:
            raise TemplateFileError(f"{metadata['name']}: id {existing.id} belongs to a "
                                    "user's template; only global templates are imported")
        before = existing.latest_version
        template = service.update_template(
            session=session, actor=SYSTEM, template_id=existing.id,
            changes=TemplateChanges(
                template_text=text, variables=content.variables,
                model_config=content.model_config, name=metadata["name"],
                description=metadata.get("description"),
                template_type=metadata["template_type"], timeframe=metadata.get("timeframe"),
                language=metadata.get("language"), change_note="imported"))
        changed = template.latest_version != before
        (report.new_versions if changed else report.unchanged).append(template.name)
    _apply_flags(session, template, metadata)


def _create(session: Session, metadata: dict[str, Any],
            content: TemplateContent) -> PromptTemplate:
    template = service.create_template(session=session, actor=SYSTEM, draft=service.TemplateDraft(
        name=metadata["name"], description=metadata.get("description") or "",
        template_type=metadata["template_type"], timeframe=metadata.get("timeframe") or "daily",
        language=metadata.get("language") or "en", content=content, change_note="imported",
        # Keep the exported id: signals and executions elsewhere refer to it.
        template_id=metadata["id"]))
    return template


def _apply_flags(session: Session, template: PromptTemplate, metadata: dict[str, Any]) -> None:
    active = bool(metadata.get("is_active", True))
    if template.is_active != active:
        service.set_active(session=session, actor=SYSTEM, template_id=template.id,
                           active=active)
    if metadata.get("is_default") and not template.is_default:
        service.set_default(session=session, actor=SYSTEM, template_id=template.id)
