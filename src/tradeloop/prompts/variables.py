"""Declared template variables: names with types, and the checks a render's input must pass.

A template declares every variable it reads, so a missing or mistyped value is an error the
caller can fix before anything reaches a model (Langfuse users ask for exactly this strictness).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

VARIABLE_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "list": (list, tuple),
    "object": (dict,),
    "any": (object,),
}


class VariableSpecError(ValueError):
    """A declared variable list that is not well formed."""


def normalize_variables(raw: Iterable[Any]) -> list[dict[str, Any]]:
    """Declared variables as [{name, type, description, nullable}], sorted as given.

    Accepts plain names (seed 001's `"variables": ["query"]`, typed `any`) and mappings.
    """
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in raw:
        spec = {"name": item} if isinstance(item, str) else dict(item)
        name = spec.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise VariableSpecError(f"variable name {name!r} is not a valid identifier")
        if name in seen:
            raise VariableSpecError(f"variable '{name}' is declared twice")
        kind = spec.get("type", "any")
        if kind not in VARIABLE_TYPES:
            raise VariableSpecError(f"variable '{name}' has unknown type {kind!r}; use one of "
                                    f"{', '.join(VARIABLE_TYPES)}")
        seen.add(name)
        result.append({"name": name, "type": kind,
                       "description": str(spec.get("description") or ""),
                       "nullable": bool(spec.get("nullable", False))})
    return result


def variable_names(declared: Iterable[Mapping[str, Any]]) -> list[str]:
    return [spec["name"] for spec in declared]


def check_values(declared: Iterable[Mapping[str, Any]],
                 values: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every declared variable missing from `values` or of the wrong type, as
    {variable, message}; an empty list means the values fit."""
    problems: list[dict[str, str]] = []
    for spec in declared:
        name, kind = spec["name"], spec["type"]
        if name not in values:
            problems.append({"variable": name, "message": f"'{name}' ({kind}) is missing"})
            continue
        value = values[name]
        if value is None:
            if not spec.get("nullable"):
                problems.append({"variable": name,
                                 "message": f"'{name}' is null but not declared nullable"})
            continue
        if not _has_type(value, kind):
            problems.append({"variable": name, "message": f"'{name}' should be {kind}, got "
                                                          f"{type(value).__name__}"})
    return problems


def _has_type(value: Any, kind: str) -> bool:
    if kind in {"number", "integer"} and isinstance(value, bool):
        return False
    return isinstance(value, VARIABLE_TYPES[kind])
