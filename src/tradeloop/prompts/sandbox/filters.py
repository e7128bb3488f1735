"""The filters templates may use: an allowlist of Jinja's own, each result charged to the
render's budget, and every argument that sets a size (widths, indents, precision) bounded.

Filters whose result can outgrow their input (`join`, `replace`, `indent`, `tojson` with an
indent) measure the result from their inputs and refuse it before building it. `center`,
`format`, `wordwrap`, `filesizeformat`, `pprint`, `batch`, `slice` and the rest of Jinja's
filters are not available: a template using one fails to compile (and so to validate).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import filters as jinja_filters

from tradeloop.prompts.sandbox.limits import (
    UnsafeOperationError,
    built,
    ensure_fits,
    join_bounded,
)

MAX_INDENT = 64
MAX_ROUND_DIGITS = 30  # round(5, -10**9) would compute 10**(10**9) first

SAFE_FILTERS = (
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first",
    "float", "groupby", "int", "items", "last", "length", "list", "lower", "map", "max", "min",
    "reject", "rejectattr", "reverse", "select", "selectattr", "sort", "string", "striptags",
    "title", "tojson", "trim", "truncate", "unique", "upper", "urlencode", "wordcount")
# These return one of their inputs (or a number): nothing new to charge.
_PASS_THROUGH = frozenset({"attr", "count", "d", "default", "first", "last", "length", "max",
                           "min", "wordcount"})


def safe_filters(builtin: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """The filters of the sandbox, from Jinja's `builtin` ones."""
    filters = {name: builtin[name] if name in _PASS_THROUGH else _charged(builtin[name])
               for name in SAFE_FILTERS}
    filters.update(na=not_available, join=bounded_join, replace=bounded_replace,
                   indent=bounded_indent, round=bounded_round,
                   sum=_charged(jinja_filters.pass_environment(numeric_sum)))
    return filters


def _charged(function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter with its result charged to the budget (keeps Jinja's pass_* mark)."""

    def charged(*args: Any, **kwargs: Any) -> Any:
        return built(function(*args, **kwargs))

    if hasattr(function, "jinja_pass_arg"):
        charged.jinja_pass_arg = function.jinja_pass_arg  # type: ignore[attr-defined]
    return charged


def not_available(value: Any, text: str = "n/a") -> Any:
    """`{{ x|na }}`: the value, or "n/a" when it is None (an indicator without enough bars)."""
    return text if value is None else value


@jinja_filters.pass_eval_context
def bounded_join(eval_ctx: Any, value: Iterable[Any], d: Any = "",
                 attribute: Any = None) -> str:
    if attribute is not None:
        value = map(jinja_filters.make_attrgetter(eval_ctx.environment, attribute), value)
    return join_bounded(str(d), value)


def bounded_replace(s: Any, old: str, new: str, count: int | None = None) -> str:
    """`str.replace`, refused before replacing when the result would be too long."""
    text = str(s)
    occurrences = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    ensure_fits(len(text) + occurrences * (len(new) - len(old)))
    return built(text.replace(old, new, -1 if count is None else count))  # type: ignore[no-any-return]


def bounded_indent(s: Any, width: int | str = 4, first: bool = False,
                   blank: bool = False) -> str:
    size = _width(width, "indent")
    text = str(s)
    ensure_fits(len(text) + (text.count("\n") + 1) * size)
    return built(jinja_filters.do_indent(text, width, first, blank))  # type: ignore[no-any-return]


def bounded_round(value: Any, precision: Any = 0, method: str = "common") -> float:
    if not isinstance(precision, int) or abs(precision) > MAX_ROUND_DIGITS:
        raise UnsafeOperationError(f"round() takes a precision of -{MAX_ROUND_DIGITS} to "
                                   f"{MAX_ROUND_DIGITS} digits")
    return jinja_filters.do_round(value, precision, method)  # type: ignore[arg-type]


def bounded_json_dumps(value: Any, *, indent: Any = None, **kwargs: Any) -> str:
    """`json.dumps` for `|tojson`: an indent is bounded, and its output (which grows with
    indent times nesting per line) is counted line by line, stopping at the limit."""
    if indent is None:
        return json.dumps(value, **kwargs)
    _width(indent, "tojson indent")
    return join_bounded("", json.JSONEncoder(indent=indent, **kwargs).iterencode(value))


def numeric_sum(environment: Any, iterable: Iterable[Any], attribute: Any = None,
                start: Any = 0) -> Any:
    if not isinstance(start, int | float):
        raise UnsafeOperationError("sum() adds numbers only")
    return jinja_filters.sync_do_sum(environment, iterable, attribute, start)


def _width(width: Any, what: str) -> int:
    size = len(width) if isinstance(width, str) else width
    if not isinstance(size, int) or size > MAX_INDENT:
        raise UnsafeOperationError(f"{what} is limited to {MAX_INDENT} characters")
    return max(size, 0)
