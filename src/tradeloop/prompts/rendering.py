"""Sandboxed Jinja2 rendering of prompt templates, and save-time validation (SPEC §7).

Templates are user input, so rendering assumes they are hostile:

- `ImmutableSandboxedEnvironment` (jinja2 ≥ 3.1.6, which closes the `|attr` → `str.format`
  escape of CVE-2025-27516) with `StrictUndefined`: a missing variable is an error, never an
  empty string.
- No loader, so no `{% include %}`, `{% import %}` or `{% extends %}`; no extensions.
- Only plain data is reachable: attributes of strings are limited to a few read-only methods
  (no `format`, `format_map`, `center`, `ljust`, … that allocate whatever size they are asked
  for in C), filters are an allowlist whose size-taking arguments are bounded, and the only
  globals are a capped `range`, `dict` and `namespace`.
- `**` is refused; `*` is refused on sequences and on numbers whose product would be huge;
  `%` is refused on strings (printf-style padding allocates in C).
- Every value read, produced or called is checked against the output cap, the output stops
  growing once it passes the cap, and every render has a deadline. Pure-Python loops that do
  none of those checks (nested `for` over literals) are interrupted by a watchdog thread that
  raises `RenderTimeoutError` inside the rendering thread once the deadline has passed.
"""

from __future__ import annotations

import ctypes
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2 import filters as jinja_filters
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

MAX_RANGE = 10_000
MAX_NUMBER = 10**18  # products beyond this are refused: big integers grow without bound
MAX_INDENT = 64

SAFE_STR_METHODS = frozenset({
    "lower", "upper", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith",
    "endswith", "split", "rsplit", "splitlines", "replace", "join", "count", "find", "rfind",
    "isdigit", "isalpha", "isalnum", "isupper", "islower", "isspace", "partition",
    "rpartition", "removeprefix", "removesuffix"})
SAFE_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})
SAFE_SEQUENCE_METHODS = frozenset({"index", "count"})
SAFE_FILTERS = (
    "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first",
    "float", "groupby", "indent", "int", "items", "join", "last", "length", "list", "lower",
    "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round", "select",
    "selectattr", "sort", "string", "striptags", "sum", "title", "tojson", "trim", "truncate",
    "unique", "upper", "urlencode", "wordcount")


@dataclass(frozen=True)
class RenderLimits:
    """Caps applied to one template: its text, its output, and the time to render it."""

    max_template_chars: int = 50_000
    max_output_bytes: int = 256_000
    timeout_s: float = 0.5


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


class TemplateTooLargeError(RenderError):
    kind = "template_too_large"


class OutputLimitError(RenderError):
    kind = "output_too_large"


class RenderTimeoutError(RenderError):
    kind = "timeout"

    def __init__(self, message: str = "rendering took longer than its time limit", **kw: Any):
        super().__init__(message, **kw)


class UnsafeOperationError(RenderError):
    kind = "unsafe"


class MissingVariableError(RenderError):
    kind = "undefined_variable"


@dataclass
class _Budget:
    """The limits of the render running in this thread."""

    deadline: float
    max_chars: int
    fired: bool = False


_local = threading.local()
_SIZED = (str, bytes, list, tuple, dict, set)
_DICT_ATTRIBUTES = frozenset(dir(dict))


def _budget() -> _Budget | None:
    return getattr(_local, "budget", None)


def _check(value: Any) -> Any:
    """Refuse a value past the size cap, or any work past the deadline; return the value."""
    budget = getattr(_local, "budget", None)
    if budget is None:
        return value
    if time.monotonic() > budget.deadline:
        raise RenderTimeoutError()
    if isinstance(value, _SIZED) and len(value) > budget.max_chars:
        raise OutputLimitError(f"a value of {len(value)} items exceeds the output limit of "
                               f"{budget.max_chars}")
    return value


def _capped_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise UnsafeOperationError(f"range() is limited to {MAX_RANGE} items, "
                                   f"asked for {len(result)}")
    return _check(result)


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


def _add(left: Any, right: Any) -> Any:
    return _check(left + right)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


@jinja_filters.pass_eval_context
def _bounded_join(eval_ctx: Any, value: Iterable[Any], d: str = "",
                  attribute: Any = None) -> str:
    items = _check(list(value))
    _ensure_fits(len(d) * max(len(items) - 1, 0))
    return _check(jinja_filters.sync_do_join(eval_ctx, items, d, attribute))


def _bounded_replace(s: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(s)
    occurrences = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    _ensure_fits(len(text) + occurrences * (len(new) - len(old)))
    return text.replace(old, new, -1 if count is None else count)


def _bounded_indent(s: str, width: int | str = 4, first: bool = False,
                    blank: bool = False) -> str:
    size = len(width) if isinstance(width, str) else width
    if size > MAX_INDENT:
        raise UnsafeOperationError(f"indent width is limited to {MAX_INDENT}")
    return _check(jinja_filters.do_indent(s, width, first, blank))


def _numeric_sum(environment: Any, iterable: Iterable[Any], attribute: Any = None,
                 start: Any = 0) -> Any:
    if not _is_number(start):
        raise UnsafeOperationError("sum() adds numbers only")
    return jinja_filters.sync_do_sum(environment, iterable, attribute, start)


def _not_available(value: Any, text: str = "n/a") -> Any:
    """`{{ x|na }}`: the value, or "n/a" when it is None (an indicator without enough bars)."""
    return text if value is None else value


def _ensure_fits(length: int) -> None:
    budget = _budget()
    if budget is not None and length > budget.max_chars:
        raise OutputLimitError(f"a value of {length} characters exceeds the output limit of "
                               f"{budget.max_chars}")


def _checked_filter(function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter with its result checked against the limits (keeps Jinja's pass_* marks)."""

    def checked(*args: Any, **kwargs: Any) -> Any:
        return _check(function(*args, **kwargs))

    for mark in ("jinja_pass_arg",):
        if hasattr(function, mark):
            setattr(checked, mark, getattr(function, mark))
    return checked


class PromptSandbox(ImmutableSandboxedEnvironment):
    """The sandbox every prompt template is compiled and rendered in."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, loader=None,
                         extensions=(), keep_trailing_newline=True, cache_size=0)
        self.binop_table = {**self.binop_table, "*": _multiply, "**": _power, "%": _modulo,
                            "+": _add}
        self.globals = {"range": _capped_range, "dict": dict, "namespace": Namespace}
        self.filters = self._safe_filters()

    def _safe_filters(self) -> dict[str, Callable[..., Any]]:
        filters = {name: _checked_filter(self.filters[name]) for name in SAFE_FILTERS}
        filters.update(na=_not_available, join=_bounded_join, replace=_bounded_replace,
                       indent=_bounded_indent,
                       sum=_checked_filter(jinja_filters.pass_environment(_numeric_sum)))
        return filters

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
            return _check(obj[attribute])
        return _check(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _check(super().getitem(obj, argument))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check(None)
        if isinstance(getattr(__obj, "__self__", None), str):
            # Jinja's bookkeeping arguments; str methods never take them.
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
        if getattr(__obj, "__name__", None) == "replace" and isinstance(
                getattr(__obj, "__self__", None), str):
            return _bounded_replace(__obj.__self__, *args, **kwargs)
        if getattr(__obj, "__name__", None) == "join" and isinstance(
                getattr(__obj, "__self__", None), str):
            items = [str(item) for item in _check(list(args[0]))] if args else []
            _ensure_fits(sum(map(len, items)) + len(__obj.__self__) * max(len(items) - 1, 0))
            return __obj.__self__.join(items)
        return _check(super().call(__context, __obj, *args, **kwargs))


_ENV_HOLDER: list[PromptSandbox] = []


def sandbox() -> PromptSandbox:
    """The process's sandbox (compiling is thread-safe; templates carry no shared state)."""
    if not _ENV_HOLDER:
        _ENV_HOLDER.append(PromptSandbox())
    return _ENV_HOLDER[0]


# ---------------------------------------------------------------------------- the watchdog


class _Watchdog:
    """Raises RenderTimeoutError inside threads whose render is past its deadline.

    CPython checks for such an asynchronous exception between bytecodes, so it stops any
    pure-Python loop of compiled template code. Long single C calls cannot be interrupted;
    the sandbox refuses the operations that could make one (see the module docstring).
    The thread polls on its own (registering a render only writes a dict entry), because
    waking it for every render would cost a thread switch per render.
    """

    POLL_S = 0.02

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._renders: dict[int, _Budget] = {}
        self._thread: threading.Thread | None = None

    def register(self, budget: _Budget) -> None:
        with self._lock:
            self._renders[threading.get_ident()] = budget
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="prompt-render-watchdog",
                                                daemon=True)
                self._thread.start()

    def unregister(self) -> None:
        ident = threading.get_ident()
        with self._lock:
            budget = self._renders.pop(ident, None)
            if budget is not None and budget.fired:
                # Fired but not raised yet: clear it so it cannot surface in unrelated code.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)

    def _run(self) -> None:
        while True:
            time.sleep(self.POLL_S)
            with self._lock:
                now = time.monotonic()
                for ident, budget in self._renders.items():
                    if not budget.fired and now > budget.deadline + self.POLL_S:
                        budget.fired = True
                        ctypes.pythonapi.PyThreadState_SetAsyncExc(
                            ctypes.c_ulong(ident), ctypes.py_object(RenderTimeoutError))


_watchdog = _Watchdog()


# ---------------------------------------------------------------------------- compile/render


@dataclass(frozen=True)
class CompiledPrompt:
    """A template parsed once and ready to render many times."""

    text: str
    template: Any = field(repr=False)


def compile_template(text: str, *, limits: RenderLimits = DEFAULT_LIMITS) -> CompiledPrompt:
    """Parse and compile `text` in the sandbox; RenderError (with line) when it cannot."""
    _check_template_size(text, limits)
    try:
        return CompiledPrompt(text, sandbox().from_string(text))
    except TemplateSyntaxError as exc:
        raise RenderError(f"syntax error: {exc.message}", line=exc.lineno) from None


def render(template: CompiledPrompt | str, variables: Mapping[str, Any], *,
           limits: RenderLimits = DEFAULT_LIMITS) -> str:
    """Render a template with `variables` under the limits; RenderError on any failure.

    The output stops being produced as soon as it passes `limits.max_output_bytes`, and the
    render is abandoned once it runs longer than `limits.timeout_s`.
    """
    compiled = template if isinstance(template, CompiledPrompt) else \
        compile_template(template, limits=limits)
    budget = _Budget(deadline=time.monotonic() + limits.timeout_s,
                     max_chars=limits.max_output_bytes)
    _local.budget = budget
    _watchdog.register(budget)
    try:
        return _generate(compiled, variables, limits)
    except RenderError as exc:
        exc.line = exc.line or _error_line(exc)
        raise
    except UndefinedError as exc:
        raise MissingVariableError(str(exc), line=_error_line(exc)) from None
    except SecurityError as exc:
        raise UnsafeOperationError(str(exc), line=_error_line(exc)) from None
    except TypeError as exc:
        if "no loader" in str(exc):
            raise UnsafeOperationError("include, import and extends are not available: "
                                       "templates are self-contained") from None
        raise RenderError(f"TypeError: {exc}", line=_error_line(exc)) from None
    except RecursionError:
        raise UnsafeOperationError("macro recursion is too deep") from None
    except MemoryError:
        raise OutputLimitError("rendering ran out of memory") from None
    except (TemplateError, ArithmeticError, ValueError, LookupError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}", line=_error_line(exc)) from None
    finally:
        _watchdog.unregister()
        _local.budget = None


def _generate(compiled: CompiledPrompt, variables: Mapping[str, Any],
              limits: RenderLimits) -> str:
    # Template.generate() without its extra generator layer: this loop runs per chunk.
    template = compiled.template
    parts: list[str] = []
    size = 0
    cap = limits.max_output_bytes
    try:
        for chunk in template.root_render_func(template.new_context(dict(variables))):
            size += len(chunk)
            if size > cap:  # bytes ≥ characters: stop before encoding
                raise OutputLimitError(f"output exceeds {cap} bytes")
            parts.append(chunk)
    except Exception:
        template.environment.handle_exception()  # re-raises with template line numbers
    text = "".join(parts)
    # UTF-8 takes at most 4 bytes a character: encode only when the text could be too long.
    if 4 * size > limits.max_output_bytes and \
            len(text.encode("utf-8")) > limits.max_output_bytes:
        raise OutputLimitError(f"output exceeds {limits.max_output_bytes} bytes")
    return text


def _error_line(exc: BaseException) -> int | None:
    """The template line a render error happened on, from the traceback of compiled code."""
    traceback = exc.__traceback__
    line = None
    while traceback is not None:
        # Jinja rewrites tracebacks so that template frames carry template line numbers.
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def _check_template_size(text: str, limits: RenderLimits) -> None:
    if len(text) > limits.max_template_chars:
        raise TemplateTooLargeError(f"the template has {len(text)} characters; the limit is "
                                    f"{limits.max_template_chars}")


# ---------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class TemplateIssue:
    """One problem found when saving a template: what and on which line."""

    kind: str
    message: str
    line: int | None = None
    variable: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "line": self.line,
                "variable": self.variable}


def validate_template(text: str, declared: Iterable[str] | None = None, *,
                      limits: RenderLimits = DEFAULT_LIMITS) -> list[TemplateIssue]:
    """Every problem of a template's text: size, syntax (with line) and, when `declared` is
    given, each variable used but not declared (with the first line using it)."""
    try:
        _check_template_size(text, limits)
        tree = sandbox().parse(text)
    except RenderError as exc:
        return [TemplateIssue(exc.kind, exc.message, exc.line)]
    except TemplateSyntaxError as exc:
        return [TemplateIssue("syntax_error", f"syntax error: {exc.message}", exc.lineno)]
    refused = [TemplateIssue("not_allowed", f"{{% {kind} %}} is not available: templates "
                                            "are self-contained", node.lineno)
               for node_type, kind in _LOADING_NODES for node in tree.find_all(node_type)]
    if declared is None:
        return refused
    known = set(declared) | set(sandbox().globals)
    return refused + [
        TemplateIssue("undeclared_variable",
                      f"'{name}' is used but not declared; add it to the variables", line, name)
        for name, line in used_variables(tree).items() if name not in known]


_LOADING_NODES = ((nodes.Include, "include"), (nodes.Import, "import"),
                  (nodes.FromImport, "from … import"), (nodes.Extends, "extends"))


def used_variables(tree: nodes.Template) -> dict[str, int]:
    """Names the template reads from its context, each with the first line reading it."""
    from jinja2 import meta

    free = meta.find_undeclared_variables(tree)
    first_line: dict[str, int] = {}
    for name_node in tree.find_all(nodes.Name):
        if name_node.ctx == "load" and name_node.name in free:
            first_line.setdefault(name_node.name, name_node.lineno)
    return dict(sorted(first_line.items(), key=operator.itemgetter(1)))
