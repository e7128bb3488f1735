"""The limits of one render, the errors that enforce them, and the budget a render spends.

A template is hostile until proven otherwise, so one render may not take more than its share
of the process, whatever the template does:

- a deadline that covers compiling and rendering (`timeout_s`); the watchdog interrupts loops
  that build nothing;
- no value it builds, nor its output, may be longer than `max_output_bytes`;
- everything it builds, summed over the whole render, may not pass `max_memory_bytes`, so
  it cannot hold more than that alive either, whatever it keeps in variables or buffers.

Sizes are counted in *units*: about one character of the value's text (a list counts its
items' text and separators, a number 8), i.e. what printing the value would produce. A unit
costs at most `BYTES_PER_UNIT` bytes (UCS-4 strings; a list cell and its small item).

Operations whose result can outgrow their inputs (`~`, `+`, joining, replacing, indenting,
JSON with indentation, macro output) compute the result's size from their inputs and refuse
it *before* building it; every other value is measured as it is produced. Sizes of lists and
dicts are remembered for the render (by identity: the sandbox lets no template change a list
or dict), so a list holding the same big list many times is measured once per object, and a
measurement stops as soon as it passes the limit — a value can never cost more to measure than
the limit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jinja2.utils import Namespace

from tradeloop.prompts.sandbox.watchdog import Watchdog

BYTES_PER_UNIT = 4
SCALAR_UNITS = 8  # a number, None or a boolean as text, about
OBJECT_UNITS = 12  # what one more Python object costs beyond its text (header, list cell)
MAX_VALUE_DEPTH = 32  # lists/dicts nested deeper are refused: printing and hashing recurse
MEMO_MIN_UNITS = 256  # smaller values are cheaper to measure again than to remember
MAX_CALL_DEPTH = 20  # macros (and recursive loops) calling each other, nested


@dataclass(frozen=True)
class RenderLimits:
    """Caps applied to one template: its text, its output and values, the memory it may
    build, and the time to compile and render it."""

    max_template_chars: int = 50_000
    max_output_bytes: int = 256_000
    timeout_s: float = 0.5
    max_memory_bytes: int = 32 * 2**20


DEFAULT_LIMITS = RenderLimits()


class RenderError(Exception):
    """A template that could not be rendered; `kind` says why, `line` where when known."""

    kind = "render_error"

    def __init__(self, message: str, *, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "line": self.line}


class InvalidSyntaxError(RenderError):
    kind = "syntax_error"


class TemplateTooLargeError(RenderError):
    kind = "template_too_large"


class TemplateTooComplexError(RenderError):
    kind = "template_too_complex"


class OutputLimitError(RenderError):
    kind = "output_too_large"


class MemoryLimitError(RenderError):
    kind = "memory_limit"


class RenderTimeoutError(RenderError):
    kind = "timeout"

    def __init__(self, message: str = "rendering took longer than its time limit", **kw: Any):
        super().__init__(message, **kw)


class UnsafeOperationError(RenderError):
    kind = "unsafe"


class MissingVariableError(RenderError):
    kind = "undefined_variable"


@dataclass(eq=False)
class Budget:
    """What the render running in this thread may still spend."""

    deadline: float
    max_value: int
    max_units: int
    spent: int = 0
    call_depth: int = 0
    fired: bool = False  # set by the watchdog
    closed: bool = False  # the render is over: the watchdog leaves it alone
    sizes: dict[int, tuple[Any, int]] = field(default_factory=dict)


class _Active(threading.local):
    budget: Budget | None = None


_active = _Active()
watchdog = Watchdog(RenderTimeoutError)


def active_budget() -> Budget | None:
    return _active.budget


def start_budget(limits: RenderLimits) -> Budget:
    """Open the budget of a render in this thread (close it with `end_budget`)."""
    budget = Budget(deadline=time.monotonic() + limits.timeout_s,
                    max_value=limits.max_output_bytes,
                    max_units=limits.max_memory_bytes // BYTES_PER_UNIT)
    _active.budget = budget
    watchdog.register(budget)
    return budget


def end_budget(budget: Budget) -> None:
    """Close the budget of the render in this thread.

    Callers set `budget.closed = True` themselves, as the first statement of their
    `finally`: a function call is where the watchdog's exception can land, and once closed
    the watchdog fires no more. Should it land here anyway, the render fails with it, and the
    closed budget is ignored by the next one.
    """
    if _active.budget is budget:
        _active.budget = None
    watchdog.unregister()


@contextmanager
def spending(limits: RenderLimits) -> Iterator[Budget]:
    """Run the block under the active budget (compiling inside a render spends the render's),
    else under a new one."""
    active = _active.budget
    if active is not None and not active.closed:
        yield active
        return
    budget = start_budget(limits)
    try:
        yield budget
    finally:
        budget.closed = True
        end_budget(budget)


# ---------------------------------------------------------------------------- spending


def built(value: Any) -> Any:
    """Charge a value the template has just built; refuse it when it is too large, when the
    render has built too much in total, or when its time is up. Returns the value."""
    budget = _active.budget
    if budget is None:
        return value
    size = len(value) + 2 if type(value) is str else value_size(value, budget)
    if size > budget.max_value:
        raise _too_large(budget)
    charge(budget, size + OBJECT_UNITS)
    if time.monotonic() > budget.deadline:
        raise RenderTimeoutError()
    return value


def ensure_fits(size: int) -> None:
    """Refuse, before building it, a value that would be `size` units long."""
    budget = _active.budget
    if budget is not None and size > budget.max_value:
        raise _too_large(budget)


def charge(budget: Budget, units: int) -> None:
    budget.spent += units
    if budget.spent > budget.max_units:
        raise MemoryLimitError(
            f"the template built more than {budget.max_units * BYTES_PER_UNIT // 2**20} MB of "
            "text and lists in total (PROMPT_RENDER_MAX_MEMORY_MB); write text to the output "
            "instead of accumulating it in variables")


def join_bounded(separator: str, items: Iterable[Any]) -> str:
    """`separator.join(str(item) …)`, refused as soon as the result would be too long."""
    budget = _active.budget
    limit = budget.max_value if budget is not None else None
    parts = []
    total = 0
    for item in items:
        text = item if isinstance(item, str) else str(item)
        total += len(text) + len(separator)
        if limit is not None and total > limit:
            raise _too_large(budget)  # type: ignore[arg-type]
        parts.append(text)
    return built(separator.join(parts))  # type: ignore[no-any-return]


def call_depth_entered(budget: Budget | None) -> None:
    """Count one more nested macro (or recursive loop) call; refuse past MAX_CALL_DEPTH."""
    if budget is None:
        return
    if budget.call_depth >= MAX_CALL_DEPTH:
        raise UnsafeOperationError(f"macros may call each other {MAX_CALL_DEPTH} levels deep "
                                   "(macro recursion is too deep)")
    budget.call_depth += 1


def _too_large(budget: Budget) -> OutputLimitError:
    return OutputLimitError(f"a value longer than {budget.max_value} characters would be "
                            "built (PROMPT_OUTPUT_MAX_BYTES)")


# ---------------------------------------------------------------------------- measuring

_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
# Only these can hold other values: every container a template can build is one of them.
_WALKED = (list, tuple, dict, set, frozenset, *_VIEWS, Namespace)
_SCALARS = frozenset({float, bool, type(None)})


def value_size(value: Any, budget: Budget) -> int:
    """The units printing `value` takes, about (see the module docstring)."""
    kind = type(value)
    if kind is str:
        return len(value) + 2
    if kind in _SCALARS:
        return SCALAR_UNITS
    if kind is int:
        return max(SCALAR_UNITS, value.bit_length() // 3)
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, _WALKED):
        return _walked_size(value, budget, 0)
    return SCALAR_UNITS


def _walked_size(value: Any, budget: Budget, depth: int) -> int:
    known = budget.sizes.get(id(value))
    if known is not None and known[0] is value:
        return known[1]
    if depth >= MAX_VALUE_DEPTH:
        raise OutputLimitError(f"lists and dicts may nest {MAX_VALUE_DEPTH} levels deep")
    if isinstance(value, Namespace) and depth:
        # A namespace can change after the list holding it was measured.
        raise UnsafeOperationError("a namespace cannot be put into a list, a dict or another "
                                   "namespace")
    total = 2
    limit = budget.max_value
    for child in _children(value):
        total += 2 + (_walked_size(child, budget, depth + 1) if isinstance(child, _WALKED)
                      else value_size(child, budget))
        if total > limit:
            raise _too_large(budget)
    if total >= MEMO_MIN_UNITS and not isinstance(value, Namespace):
        budget.sizes[id(value)] = (value, total)  # keeps it alive: its id cannot be reused
    return total


def _children(value: Any) -> Iterable[Any]:
    if isinstance(value, Namespace):
        value = namespace_attributes(value)
    if isinstance(value, dict):
        return _flattened(value.items())
    if isinstance(value, _VIEWS[2]):
        return _flattened(value)
    return value  # type: ignore[no-any-return]


def _flattened(pairs: Iterable[tuple[Any, Any]]) -> Iterator[Any]:
    for key, item in pairs:
        yield key
        yield item


def namespace_attributes(namespace: Namespace) -> dict[str, Any]:
    """The attributes dict of a Jinja namespace (kept private by name mangling)."""
    return object.__getattribute__(namespace, "_Namespace__attrs")  # type: ignore[no-any-return]
