"""Edge values as explicit examples of the OpenAPI document the fuzz run loads.

The fuzz dictionaries of schemathesis.toml mix edge values (int64 bounds, year 1 and 9999,
1e300 …) into generated cases at random, so whether a given parameter meets one in a bounded
run depends on the seed and on the code (a changed schema changes what Hypothesis draws). As
`examples` of every integer, number and date parameter and request-body field, each value the
schema admits is sent at least once, whatever the seed: schemathesis' examples phase combines
examples so that every one of them is used (in cases of their own, beside the generated ones).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from schemathesis.config import ProjectConfig

DATE_FORMATS = frozenset({"date", "date-time"})
# The schemathesis.toml dictionary with the edge values of each JSON Schema type.
DICTIONARY_OF_TYPE = {"integer": "edge_integers", "number": "edge_numbers",
                      "string": "edge_strings"}


def with_edge_examples(document: dict[str, Any], config: ProjectConfig) -> dict[str, Any]:
    """A copy of `document` whose numeric and date parameters and request-body fields list
    the dictionary entries of their type as `examples` (schemathesis sends those the schema
    admits)."""
    document = copy.deepcopy(document)
    entries = {kind: [entry.value for entry in config.dictionaries[name].entries]
               for kind, name in DICTIONARY_OF_TYPE.items()}
    for schema in _input_schemas(document):
        kind = _edge_kind(schema)
        if kind is not None:
            schema["examples"] = entries[kind]
    return document


def _input_schemas(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The schemas of every parameter, and of every field of the request bodies' models."""
    bodies: set[str] = set()
    for path_item in document["paths"].values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                yield parameter["schema"]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                reference = media.get("schema", {}).get("$ref", "")
                bodies.add(reference.rsplit("/", 1)[-1])
    models = document.get("components", {}).get("schemas", {})
    for name in sorted(bodies & models.keys()):
        yield from models[name].get("properties", {}).values()


def _edge_kind(schema: dict[str, Any]) -> str | None:
    """`integer`, `number` or `string` (dates only) for a schema or its nullable variant."""
    for branch in [schema, *schema.get("anyOf", [])]:
        kind = branch.get("type")
        if kind in ("integer", "number"):
            return str(kind)
        if kind == "string" and branch.get("format") in DATE_FORMATS:
            return "string"
    return None
