"""The Jinja2 environment every prompt template is compiled and rendered in.

- `ImmutableSandboxedEnvironment` (jinja2 ≥ 3.1.6, which closes the `|attr` → `str.format`
  escape of CVE-2025-27516) with `StrictUndefined`: a missing variable is an error, never an
  empty string. No loader, so no `{% include %}`, `{% import %}` or `{% extends %}`; no
  extensions.
- Only plain data is reachable: attributes of strings are limited to a few read-only methods
  (no `format`, `center`, `ljust`, … that allocate whatever size they are asked for in C),
  filters are an allowlist (`filters`), and the only globals are a capped `range`, `dict`
  and `namespace`.
- `**` is refused; `*` works on numbers only, up to 10¹⁸; `%` is refused on strings.
- Every value the template builds goes through the budget (`limits`): the sandbox's own
  hooks (operators, calls, slices) and, where Jinja has none, a code generator that routes
  them there — `~`, list/tuple/dict literals, and the output of macros and `{% set %}`,
  `{% filter %}` and call blocks, which is collected in a buffer charged chunk by chunk.
  Macros (and recursive loops) may nest `MAX_CALL_DEPTH` calls deep.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from tradeloop.prompts.sandbox.filters import (
    bounded_json_dumps,
    bounded_replace,
    safe_filters,
)
from tradeloop.prompts.sandbox.limits import (
    UnsafeOperationError,
    active_budget,
    built,
    call_depth_entered,
    charge,
    ensure_fits,
    join_bounded,
    value_size,
)

MAX_RANGE = 10_000
MAX_NUMBER = 10**18  # products beyond this are refused: big integers grow without bound

SAFE_STR_METHODS = frozenset({
    "lower", "upper", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith",
    "endswith", "split", "rsplit", "splitlines", "replace", "join", "count", "find", "rfind",
    "isdigit", "isalpha", "isalnum", "isupper", "islower", "isspace", "partition",
    "rpartition", "removeprefix", "removesuffix"})
SAFE_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})
SAFE_SEQUENCE_METHODS = frozenset({"index", "count"})
_DICT_ATTRIBUTES = frozenset(dir(dict))
_CELL_UNITS = 2  # one list cell of an output buffer (8 bytes)


class BoundedNamespace(Namespace):
    """`namespace()`: `{% set ns.attr = value %}` is refused when the namespace as a whole
    would print longer than the value limit (values were charged when they were built)."""

    def __setitem__(self, name: str, value: Any) -> None:
        super().__setitem__(name, value)
        budget = active_budget()
        if budget is not None:
            ensure_fits(value_size(self, budget))


class OutputBuffer(list[str]):
    """Collects the output of a macro or block; every chunk (and its list cell) is charged as
    it is appended, so a loop inside a macro cannot pile up output before the macro returns."""

    def append(self, chunk: str) -> None:
        budget = active_budget()
        if budget is not None:
            charge(budget, len(chunk) + _CELL_UNITS)
        super().append(chunk)

    def extend(self, chunks: Any) -> None:
        for chunk in chunks:
            self.append(chunk)


class BudgetedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with the values it builds without a sandbox hook routed
    through the environment's budget."""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:  # noqa: N802 (Jinja's name)
        self.write("environment.concat_values((")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:  # noqa: N802 (Jinja's name)
        self._built(super().visit_List, node, frame)

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:  # noqa: N802 (Jinja's name)
        self._built(super().visit_Dict, node, frame)

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:  # noqa: N802 (Jinja's name)
        if node.ctx != "load":  # an assignment target: `{% for a, b in … %}`
            super().visit_Tuple(node, frame)
            return
        self._built(super().visit_Tuple, node, frame)

    def _built(self, visit: Callable[[Any, Frame], None], node: nodes.Expr,
               frame: Frame) -> None:
        self.write("environment.built(")
        visit(node, frame)
        self.write(")")


class PromptSandbox(ImmutableSandboxedEnvironment):
    """The sandbox every prompt template is compiled and rendered in."""

    code_generator_class = BudgetedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    built = staticmethod(built)

    def __init__(self) -> None:
        # Not `optimized`: Jinja's optimizer folds constant expressions while compiling and
        # lets some of their errors escape as other exceptions (`{{ {}[1:] if 1 else 2 }}`
        # raises UndefinedError from the compiler); output is still folded where it is safe.
        super().__init__(undefined=StrictUndefined, autoescape=False, loader=None,
                         extensions=(), keep_trailing_newline=True, cache_size=0,
                         optimized=False)
        self.binop_table = {**self.binop_table, "*": _multiply, "**": _power, "%": _modulo,
                            "+": _add}
        self.globals = {"range": _capped_range, "dict": dict, "namespace": BoundedNamespace}
        self.filters = safe_filters(self.filters)
        self.policies["json.dumps_function"] = bounded_json_dumps

    @staticmethod
    def output_buffer() -> OutputBuffer:
        return OutputBuffer()

    @staticmethod
    def concat(chunks: Any) -> str:
        """Joins a macro's or block's output (`concat(buffer)` in compiled code)."""
        return join_bounded("", chunks)

    @staticmethod
    def concat_values(values: tuple[Any, ...]) -> str:
        """`a ~ b ~ c`."""
        return join_bounded("", values)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, str):
            return attr in SAFE_STR_METHODS
        if isinstance(obj, Mapping):
            return attr in SAFE_MAPPING_METHODS
        if isinstance(obj, list | tuple):
            return attr in SAFE_SEQUENCE_METHODS
        return not callable(value) or isinstance(obj, Namespace)

    def wrap_str_format(self, value: Any) -> None:
        # Jinja hands out a sandboxed str.format; padding specs still allocate any size in C,
        # so format and format_map are simply not available (is_safe_attribute refuses them).
        return None

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `bar.close` on a plain dict: the sandbox would first try the attribute and catch
        # the AttributeError; a key that is no dict attribute name can only be the item.
        if type(obj) is dict and attribute in obj and attribute not in _DICT_ATTRIBUTES:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        value = super().getitem(obj, argument)
        # Reading builds nothing (what is read was measured when it was built, or comes from
        # the caller's variables); a slice is a new value.
        return built(value) if isinstance(argument, slice) else value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if isinstance(__obj, Macro | LoopContext):
            return __self._nested_call(__context, __obj, args, kwargs)
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            # Jinja's bookkeeping arguments; str methods never take them.
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
            if __obj.__name__ == "replace":
                return bounded_replace(owner, *args, **kwargs)
            if __obj.__name__ == "join":
                return join_bounded(owner, *args, **kwargs)
        return built(super().call(__context, __obj, *args, **kwargs))

    def _nested_call(self, context: Any, function: Any, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> Any:
        # A macro's output was charged chunk by chunk and as a whole by `concat`.
        budget = active_budget()
        call_depth_entered(budget)
        try:
            return super().call(context, function, *args, **kwargs)
        finally:
            if budget is not None:
                budget.call_depth -= 1


def _capped_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise UnsafeOperationError(f"range() is limited to {MAX_RANGE} items, "
                                   f"asked for {len(result)}")
    return result


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, str) and isinstance(right, str):
        ensure_fits(len(left) + len(right))
    elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
        budget = active_budget()
        if budget is not None:
            ensure_fits(value_size(left, budget) + value_size(right, budget))
    return built(left + right)


def _multiply(left: Any, right: Any) -> Any:
    if not (_is_number(left) and _is_number(right)):
        raise UnsafeOperationError("'*' works on numbers only (no string or list repetition)")
    product = left * right
    if abs(product) > MAX_NUMBER:
        raise UnsafeOperationError(f"'*' result exceeds {MAX_NUMBER:.0e}")
    return product


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str | bytes):
        raise UnsafeOperationError("printf-style '%' formatting is not allowed; use filters")
    return left % right


def _power(_left: Any, _right: Any) -> Any:
    raise UnsafeOperationError("'**' is not allowed in templates")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


_ENV_HOLDER: list[PromptSandbox] = []


def sandbox() -> PromptSandbox:
    """The process's sandbox (compiling is thread-safe; templates carry no shared state)."""
    if not _ENV_HOLDER:
        _ENV_HOLDER.append(PromptSandbox())
    return _ENV_HOLDER[0]
