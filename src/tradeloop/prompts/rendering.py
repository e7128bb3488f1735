"""Compiling, rendering and validating prompt templates in the sandbox (SPEC §7).

Templates are user input, so rendering assumes they are hostile (`tradeloop.prompts.sandbox`
says how): one render, compiling included, costs at most its deadline and its memory budget,
whatever the template. Every failure is a `RenderError` with a `kind` and the template line;
the API answers them with 422.

The invariant the save path keeps: a template that validates compiles, and renders or fails
with a `RenderError` for its variables.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.meta import TrackingCodeGenerator

from tradeloop.prompts.sandbox.environment import MAX_RANGE, sandbox
from tradeloop.prompts.sandbox.limits import (
    DEFAULT_LIMITS,
    InvalidSyntaxError,
    MemoryLimitError,
    MissingVariableError,
    OutputLimitError,
    RenderError,
    RenderLimits,
    RenderTimeoutError,
    TemplateTooComplexError,
    TemplateTooLargeError,
    UnsafeOperationError,
    end_budget,
    spending,
    start_budget,
)
from tradeloop.prompts.sandbox.structure import checked_tree

__all__ = [
    "DEFAULT_LIMITS", "MAX_RANGE", "CompiledPrompt", "InvalidSyntaxError", "MemoryLimitError",
    "MissingVariableError", "OutputLimitError", "RenderError", "RenderLimits",
    "RenderTimeoutError", "TemplateIssue", "TemplateTooComplexError", "TemplateTooLargeError",
    "UnsafeOperationError", "compile_template", "render", "used_variables",
    "validate_template"]


@dataclass(frozen=True)
class CompiledPrompt:
    """A template parsed once and ready to render many times."""

    text: str
    template: Any = field(repr=False)


def compile_template(text: str, *, limits: RenderLimits = DEFAULT_LIMITS) -> CompiledPrompt:
    """Check the template's size and shape, then compile it within the render deadline;
    RenderError (with its line) when it cannot."""
    try:
        with spending(limits):
            return CompiledPrompt(text, _compiled(checked_tree(text, limits)))
    except RenderError as exc:
        exc.line = exc.line or 1  # what stopped before a line was known is about all of it
        raise


def _compiled(tree: nodes.Template) -> Any:
    environment = sandbox()
    try:
        # Filters with constant arguments run while compiling (constant folding): under the
        # budget of the `spending` block around this, like at render time.
        code = environment.compile(tree)
    except TemplateSyntaxError as exc:
        raise InvalidSyntaxError(f"syntax error: {exc.message}", line=exc.lineno) from None
    except (SyntaxError, RecursionError, MemoryError):
        # The structure checks keep templates well inside Python's compiler limits.
        raise TemplateTooComplexError("the template is too complex to compile; simplify it",
                                      line=1) from None
    except RenderTimeoutError:
        raise RenderTimeoutError("compiling the template took longer than the render time "
                                 "limit; make it smaller", line=1) from None
    except Exception as exc:  # never a server error for a template's text
        raise RenderError(f"the template could not be compiled ({type(exc).__name__}: "
                          f"{exc})", line=1) from None
    return environment.template_class.from_code(environment, code,
                                                environment.make_globals(None), None)


def render(template: CompiledPrompt | str, variables: Mapping[str, Any], *,
           limits: RenderLimits = DEFAULT_LIMITS) -> str:
    """Render a template (compiling it first when given as text) with `variables` under the
    limits; RenderError on any failure. The deadline covers compiling and rendering."""
    budget = start_budget(limits)
    try:
        compiled = template if isinstance(template, CompiledPrompt) else \
            compile_template(template, limits=limits)
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
                                       "templates are self-contained",
                                       line=_error_line(exc)) from None
        raise RenderError(f"TypeError: {exc}", line=_error_line(exc)) from None
    except RecursionError as exc:
        raise UnsafeOperationError("values or calls nest too deeply",
                                   line=_error_line(exc)) from None
    except MemoryError as exc:
        raise MemoryLimitError("rendering ran out of memory", line=_error_line(exc)) from None
    except Exception as exc:  # whatever a template makes fail is its error
        raise RenderError(f"{type(exc).__name__}: {exc}", line=_error_line(exc)) from None
    finally:
        budget.closed = True  # first, before any call: see end_budget
        end_budget(budget)


def _generate(compiled: CompiledPrompt, variables: Mapping[str, Any],
              limits: RenderLimits) -> str:
    # Template.generate() without its extra generator layer: this loop runs per chunk.
    template = compiled.template
    parts: list[str] = []
    size = 0
    cap = limits.max_output_bytes
    chunks = template.root_render_func(template.new_context(dict(variables)))
    try:
        for chunk in chunks:
            if not chunk:
                continue  # empty chunks add no text but would still take a list cell each
            size += len(chunk)
            if size > cap:  # bytes ≥ characters: stop before encoding
                raise OutputLimitError(f"output exceeds {cap} bytes",
                                       line=_suspended_line(template, chunks))
            parts.append(chunk)
    except Exception:
        try:
            template.environment.handle_exception()  # re-raises with template line numbers
        except RenderError as exc:
            # Raised between two chunks (the watchdog's timeout): where the output stopped.
            exc.line = exc.line or _error_line(exc) or _suspended_line(template, chunks)
            raise
    text = "".join(parts)
    # UTF-8 takes at most 4 bytes a character: encode only when the text could be too long.
    if 4 * size > cap and len(text.encode("utf-8")) > cap:
        raise OutputLimitError(f"output exceeds {cap} bytes",
                               line=_suspended_line(template, chunks))
    return text


def _suspended_line(template: Any, chunks: Any) -> int | None:
    """The template line the output generator stopped at (the output that passed the cap)."""
    frame = chunks.gi_frame
    return template.get_corresponding_lineno(frame.f_lineno) if frame is not None else None


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
    """Every problem of a template's text: size, shape and syntax (each with its line; the
    text is compiled, so what validates compiles) and, when `declared` is given, each
    variable used but not declared (with the first line using it)."""
    try:
        with spending(limits):
            tree = checked_tree(text, limits)
            _compiled(tree)
    except RenderError as exc:
        return [TemplateIssue(exc.kind, exc.message, exc.line or 1)]
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


class _ContextReads(TrackingCodeGenerator):
    """Jinja's `meta.find_undeclared_variables` walk, without constant folding (as the
    sandbox compiles: folding can raise from the compiler)."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.optimizer = None


def used_variables(tree: nodes.Template) -> dict[str, int]:
    """Names the template reads from its context, each with the first line reading it."""
    reads = _ContextReads(sandbox())
    reads.visit(tree)
    free = reads.undeclared_identifiers
    first_line: dict[str, int] = {}
    for name_node in tree.find_all(nodes.Name):
        if name_node.ctx == "load" and name_node.name in free:
            first_line.setdefault(name_node.name, name_node.lineno)
    return dict(sorted(first_line.items(), key=operator.itemgetter(1)))
