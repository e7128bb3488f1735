"""Guardrails (SPEC §7, seed 001): rules checked on the prompt before it is sent (input) and
on the answer (output), with the action block, warn or redact. All offline.

Guardrails are global rows managed by admins; `template_id` narrows one to a template.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tradeloop.llm import detectors
from tradeloop.llm.models import PromptGuardrail
from tradeloop.llm.parsing import OutputError, extract_json_object
from tradeloop.llm.schemas import AppliesTo, GuardrailAction, GuardrailResult, RuleType

MAX_KEYWORDS = 500
MAX_KEYWORD_LENGTH = 200
MAX_SCHEMA_ERRORS_SHOWN = 5


class GuardrailConfigError(ValueError):
    """A guardrail definition that cannot work, with the field at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Rule:
    """A guardrail as the checker needs it (detached from the session)."""

    id: uuid.UUID | None
    name: str
    rule_type: RuleType
    applies_to: AppliesTo
    action: GuardrailAction
    config: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: PromptGuardrail) -> Rule:
        return cls(row.id, row.name, RuleType(row.rule_type), AppliesTo(row.applies_to),
                   GuardrailAction(row.action), dict(row.config or {}))


@dataclass(frozen=True)
class CheckOutcome:
    """The texts after redaction, one result per rule, and whether any rule blocks."""

    texts: dict[str, str]
    results: list[GuardrailResult]

    @property
    def blocked(self) -> bool:
        return any(r.triggered and r.action is GuardrailAction.BLOCK for r in self.results)

    def block_message(self) -> str:
        names = [r.name for r in self.results
                 if r.triggered and r.action is GuardrailAction.BLOCK]
        return f"blocked by guardrail(s): {', '.join(names)}"


def active_rules(session: Session, template_id: uuid.UUID | None) -> list[Rule]:
    """The active guardrails that apply to a template (global ones and its own)."""
    scope = PromptGuardrail.template_id.is_(None)
    if template_id is not None:
        scope = or_(scope, PromptGuardrail.template_id == template_id)
    rows = session.scalars(select(PromptGuardrail).where(
        PromptGuardrail.is_active.is_(True), scope).order_by(PromptGuardrail.created_at))
    return [Rule.from_row(row) for row in rows]


def check(rules: Sequence[Rule], applies_to: AppliesTo, texts: Mapping[str, str]) -> CheckOutcome:
    """Run the rules for one side on named texts (e.g. system and user); redactions chain."""
    current = dict(texts)
    results: list[GuardrailResult] = []
    for rule in rules:
        if rule.applies_to is not applies_to:
            continue
        findings: list[str] = []
        message: str | None = None
        for part, text in current.items():
            hits, note = _evaluate(rule, text)
            findings.extend(f"{part}: {finding}" for finding in hits)
            message = message or note
            if hits and rule.action is GuardrailAction.REDACT:
                current[part] = _redacted(rule, text)
        results.append(GuardrailResult(
            guardrail_id=rule.id, name=rule.name, rule_type=rule.rule_type,
            applies_to=rule.applies_to, action=rule.action, triggered=bool(findings),
            findings=findings, message=message))
    return CheckOutcome(current, results)


def _evaluate(rule: Rule, text: str) -> tuple[list[str], str | None]:
    """Findings of one rule on one text (empty: not triggered) and an explanatory note."""
    try:
        hits = _hits(rule, text)
    except detectors.RegexTimeoutError as exc:
        # Fail closed: a pattern that cannot finish cannot vouch for the text.
        return ["regex timed out"], str(exc)
    if rule.rule_type is RuleType.REGEX_REQUIRE:
        return ([] if hits else ["required pattern not found"]), None
    if rule.rule_type is RuleType.MAX_LENGTH:
        limit = int(rule.config["max_chars"])
        return ([f"{len(text)} characters > {limit}"] if len(text) > limit else []), None
    if rule.rule_type is RuleType.JSON_SCHEMA:
        return _schema_findings(rule.config["schema"], text), None
    return [f"{hit.kind} at {hit.start}-{hit.end}" for hit in hits], None


def _hits(rule: Rule, text: str) -> list[detectors.Hit]:
    config = rule.config
    match rule.rule_type:
        case RuleType.REGEX_BLOCK | RuleType.REGEX_REQUIRE:
            pattern = detectors.compile_user_pattern(config["pattern"], config.get("flags", ()))
            return detectors.find_pattern(pattern, text, "pattern")
        case RuleType.KEYWORD_BLOCK:
            return detectors.find_keywords(config["keywords"], text,
                                           case_sensitive=bool(config.get("case_sensitive")))
        case RuleType.PII:
            return detectors.find_pii(text, config.get("types", detectors.PII_TYPES))
        case RuleType.PROMPT_INJECTION:
            return detectors.find_injection(
                text, config.get("rules", tuple(detectors.INJECTION_RULES)))
    return []


def _schema_findings(schema: Mapping[str, Any], text: str) -> list[str]:
    try:
        document = extract_json_object(text)
    except OutputError:
        return ["the answer contains no JSON object"]
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
            for error in errors[:MAX_SCHEMA_ERRORS_SHOWN]]


def _redacted(rule: Rule, text: str) -> str:
    if rule.rule_type is RuleType.MAX_LENGTH:
        return text[:int(rule.config["max_chars"])]
    return detectors.redact(text, _hits(rule, text))


# ---------------------------------------------------------------- validation at save time

def validate_definition(rule_type: RuleType, applies_to: AppliesTo, action: GuardrailAction,
                        config: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised config of a guardrail, or GuardrailConfigError naming what is wrong."""
    if action is GuardrailAction.REDACT and rule_type in (RuleType.REGEX_REQUIRE,
                                                          RuleType.JSON_SCHEMA):
        raise GuardrailConfigError("action", f"{rule_type.value} cannot redact: there is no "
                                   "span to remove; use block or warn")
    if rule_type is RuleType.JSON_SCHEMA and applies_to is not AppliesTo.OUTPUT:
        raise GuardrailConfigError("applies_to", "json_schema checks answers: use output")
    validate = _VALIDATORS[rule_type]
    return validate(dict(config))


def _validate_regex(config: dict[str, Any]) -> dict[str, Any]:
    pattern, flags = config.get("pattern"), config.get("flags", [])
    if not isinstance(pattern, str) or not pattern:
        raise GuardrailConfigError("config.pattern", "a non-empty regular expression is needed")
    if not isinstance(flags, list) or not all(isinstance(flag, str) for flag in flags):
        raise GuardrailConfigError("config.flags", "flags must be a list of names")
    try:
        detectors.compile_user_pattern(pattern, [flag.lower() for flag in flags])
    except detectors.PatternError as exc:
        raise GuardrailConfigError("config.pattern", str(exc)) from exc
    return {"pattern": pattern, "flags": [flag.lower() for flag in flags]}


def _validate_keywords(config: dict[str, Any]) -> dict[str, Any]:
    keywords = config.get("keywords")
    if (not isinstance(keywords, list) or not keywords or len(keywords) > MAX_KEYWORDS
            or not all(isinstance(k, str) and 0 < len(k.strip()) <= MAX_KEYWORD_LENGTH
                       for k in keywords)):
        raise GuardrailConfigError("config.keywords", f"1 to {MAX_KEYWORDS} non-empty keywords "
                                   f"of at most {MAX_KEYWORD_LENGTH} characters are needed")
    return {"keywords": [k.strip() for k in keywords],
            "case_sensitive": bool(config.get("case_sensitive", False))}


def _validate_max_length(config: dict[str, Any]) -> dict[str, Any]:
    limit = config.get("max_chars")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise GuardrailConfigError("config.max_chars", "a positive whole number is needed")
    return {"max_chars": limit}


def _validate_schema(config: dict[str, Any]) -> dict[str, Any]:
    schema = config.get("schema")
    if not isinstance(schema, dict):
        raise GuardrailConfigError("config.schema", "a JSON Schema object is needed")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise GuardrailConfigError("config.schema", f"invalid JSON Schema: {exc.message}") from exc
    return {"schema": schema}


def _validate_pii(config: dict[str, Any]) -> dict[str, Any]:
    return {"types": _subset(config, "types", detectors.PII_TYPES)}


def _validate_injection(config: dict[str, Any]) -> dict[str, Any]:
    return {"rules": _subset(config, "rules", tuple(detectors.INJECTION_RULES))}


def _subset(config: dict[str, Any], key: str, allowed: Sequence[str]) -> list[str]:
    chosen = config.get(key, list(allowed))
    if (not isinstance(chosen, list) or not chosen
            or not all(isinstance(item, str) and item in allowed for item in chosen)):
        raise GuardrailConfigError(f"config.{key}", f"a non-empty list from {list(allowed)}")
    return chosen


_VALIDATORS = {
    RuleType.REGEX_BLOCK: _validate_regex, RuleType.REGEX_REQUIRE: _validate_regex,
    RuleType.KEYWORD_BLOCK: _validate_keywords, RuleType.MAX_LENGTH: _validate_max_length,
    RuleType.JSON_SCHEMA: _validate_schema, RuleType.PII: _validate_pii,
    RuleType.PROMPT_INJECTION: _validate_injection,
}
