"""Read the analysis out of a model's answer: JSON first, then the first JSON object found in
prose or a code fence; validated with Pydantic. Anything else is a failed execution."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from tradeloop.llm.schemas import AnalysisOutput

MAX_SCAN_CHARS = 200_000  # an answer longer than this is not scanned for an object
MAX_OBJECT_STARTS = 64  # bounded work on adversarial text full of '{'
FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


class OutputError(Exception):
    """The answer is not a usable analysis; `error_type` is malformed_output or invalid_output."""

    def __init__(self, error_type: str, message: str):
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def extract_json_object(text: str) -> dict[str, Any]:
    """The answer as a JSON object: the whole text, a fenced block, or the first object in it."""
    stripped = text.strip()
    candidates = [stripped, *(match.group(1).strip() for match in FENCE.finditer(stripped))]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    found = _first_embedded_object(stripped[:MAX_SCAN_CHARS])
    if found is None:
        raise OutputError("malformed_output", "the answer contains no JSON object")
    return found


def _first_embedded_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    start = text.find("{")
    for _ in range(MAX_OBJECT_STARTS):
        if start < 0:
            return None
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    return None


def parse_analysis(text: str) -> AnalysisOutput:
    """The validated AnalysisOutput in `text`; OutputError says what is wrong with it."""
    data = extract_json_object(text)
    try:
        return AnalysisOutput.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'answer'}: {error['msg']}"
            for error in exc.errors())
        raise OutputError("invalid_output", f"the analysis is invalid: {problems}") from exc
