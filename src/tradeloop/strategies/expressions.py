"""Expressions of the strategy language: parsed by Python's `ast`, checked against a strict
whitelist, type-checked, and evaluated over NumPy arrays by a small tree walker.

Nothing here ever calls `eval`/`exec` or touches an attribute of a user-supplied object: the
only callables reachable from a definition are the functions in `indicators.FUNCTIONS`.
Allowed syntax: numbers (0 or 1e-15 to 1e15 in magnitude), names (series, params,
indicators), `+ - * /`, unary minus, comparisons (chains too), `and`/`or`/`not`, and calls of
known functions with positional arguments. Everything else (attributes, subscripts, lambdas,
comprehensions, keywords, strings, `**`) is refused with the position of the offending piece.
Nesting is bounded (parentheses and the tree, MAX_EXPRESSION_DEPTH), and a function call is
rehearsed on empty series at validation, so whatever it would refuse is refused up front.
Scalars evaluate as NumPy floats, like the series: 1 / 0 is inf, not an exception.
"""

from __future__ import annotations

import ast
import enum
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradeloop.strategies.indicators import FUNCTIONS, FunctionSpec

SERIES_NAMES = ("open", "high", "low", "close", "volume")
MAX_EXPRESSION_CHARS = 1_000
MAX_EXPRESSION_DEPTH = 32
MAX_PERIOD = 100_000
# Numbers written in a definition (literals, params, overrides) are 0 or 1e-15 to 1e15 in
# magnitude: within float64's range with room to spare for + - * / of them.
MAGNITUDE_DIGITS = 15
MAX_MAGNITUDE = 10.0 ** MAGNITUDE_DIGITS
MIN_MAGNITUDE = 10.0 ** -MAGNITUDE_DIGITS
TOO_LARGE = f"is too large: numbers are at most 1e{MAGNITUDE_DIGITS} in magnitude"
TOO_SMALL = f"is too small: numbers are 0 or at least 1e-{MAGNITUDE_DIGITS} in magnitude"

Value = np.ndarray | float | bool


class Kind(enum.StrEnum):
    """What an expression yields: a number, a float series, or a true/false series."""

    NUMBER = "number"
    SERIES = "series"
    BOOL = "bool"


class ExpressionError(Exception):
    """A problem at `offset` (0-based column on the expression's first line)."""

    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.message = message
        self.offset = offset


_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.Eq: operator.eq, ast.NotEq: operator.ne,
}
_REFUSED: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access is not allowed",
    ast.Subscript: "indexing is not allowed; use shift(series, n) for past values",
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.IfExp: "conditional expressions are not allowed",
    ast.NamedExpr: "assignments are not allowed",
    ast.Starred: "star arguments are not allowed",
    ast.JoinedStr: "strings are not allowed",
    ast.List: "lists are not allowed", ast.Tuple: "tuples are not allowed",
    ast.Dict: "dicts are not allowed", ast.Set: "sets are not allowed",
    ast.Await: "await is not allowed",
}


def parse_expression(text: str) -> ast.expr:
    """Parse one expression and check it against the whitelist; ExpressionError otherwise."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    source = text.strip()
    if not source:
        raise ExpressionError("expression is empty")
    _check_bracket_depth(source)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", max((exc.offset or 1) - 1, 0)) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("expression is too complex to parse") from None
    _check_depth(tree.body)
    _check_whitelist(tree.body, source)
    return tree.body


def _too_deep(offset: int) -> ExpressionError:
    return ExpressionError(f"expression is nested deeper than {MAX_EXPRESSION_DEPTH} levels",
                           offset)


def _check_bracket_depth(source: str) -> None:
    # Before the parser: parentheses make no node of their own, so the depth of the tree does
    # not see them, and CPython's parser gives up on deep ones with an obscure message.
    depth = 0
    for offset, char in enumerate(source):
        if char in "([{":
            depth += 1
            if depth > MAX_EXPRESSION_DEPTH:
                raise _too_deep(offset - source.rfind("\n", 0, offset) - 1)
        elif char in ")]}":
            depth -= 1


def _check_depth(node: ast.expr) -> None:
    stack: list[tuple[ast.AST, int]] = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_EXPRESSION_DEPTH:
            raise _too_deep(getattr(current, "col_offset", 0))
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(current))


def number_problem(value: object, written: str | None = None) -> str | None:
    """Why `value` cannot be a number of a definition, None when it can. `written` is its
    text, when known: a float written non-zero that rounded to 0 is too small, not 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        # 1e400 is read as inf: it was written finite, but too large for a float.
        overflowed = written is not None and any(char.isdigit() for char in written)
        return TOO_LARGE if overflowed else "must be a finite number"
    if abs(value) > MAX_MAGNITUDE:
        return TOO_LARGE
    if 0 < abs(value) < MIN_MAGNITUDE or (value == 0 and isinstance(value, float)
                                          and written is not None and _nonzero_digits(written)):
        return TOO_SMALL
    return None


def _nonzero_digits(written: str) -> bool:
    mantissa = re.split("[eE]", written, maxsplit=1)[0]
    return any(char in "123456789" for char in mantissa)


def _check_whitelist(node: ast.AST, source: str) -> None:
    for current in ast.walk(node):
        offset = getattr(current, "col_offset", 0)
        refusal = _REFUSED.get(type(current))
        if refusal:
            raise ExpressionError(refusal, offset)
        if isinstance(current, ast.BinOp) and type(current.op) not in _ARITHMETIC:
            symbol = "**" if isinstance(current.op, ast.Pow) else type(current.op).__name__
            raise ExpressionError(f"operator {symbol} is not allowed; use + - * /", offset)
        if isinstance(current, ast.Compare) and any(
                type(op) not in _COMPARISONS for op in current.ops):
            raise ExpressionError("only < <= > >= == != comparisons are allowed", offset)
        if isinstance(current, ast.UnaryOp) and isinstance(current.op, ast.Invert):
            raise ExpressionError("operator ~ is not allowed; use not", offset)
        if isinstance(current, ast.Constant) and (
                isinstance(current.value, str | bytes) or current.value is None
                or isinstance(current.value, complex)):
            raise ExpressionError("only numbers, true and false are allowed as literals", offset)
        if isinstance(current, ast.Constant) and not isinstance(current.value, bool):
            _check_literal(current, source)
        if isinstance(current, ast.Call):
            _check_call_shape(current)
        if isinstance(current, ast.Name) and current.id.startswith("_"):
            raise ExpressionError(f"names starting with '_' are not allowed: {current.id}",
                                  offset)
        if not isinstance(current, _ALLOWED_NODES):
            raise ExpressionError(f"{type(current).__name__} is not allowed", offset)


def _check_literal(constant: ast.Constant, source: str) -> None:
    written = ast.get_source_segment(source, constant)
    problem = number_problem(constant.value, written)
    if problem:
        shown = written if written and len(written) <= 20 else f"{(written or '')[:12]}..."
        raise ExpressionError(f"the number {shown} {problem}", constant.col_offset)


def _check_call_shape(call: ast.Call) -> None:
    if not isinstance(call.func, ast.Name):
        raise ExpressionError("only functions of the language can be called", call.col_offset)
    if call.keywords:
        raise ExpressionError(f"{call.func.id}() takes positional arguments only",
                              call.keywords[0].value.col_offset)
    if call.func.id not in FUNCTIONS:
        known = ", ".join(sorted(FUNCTIONS))
        raise ExpressionError(f"unknown function '{call.func.id}'; known functions: {known}",
                              call.col_offset)


_ALLOWED_NODES = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Call, ast.Name,
    ast.Constant, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
    *_ARITHMETIC, *_COMPARISONS,
)


def referenced_names(node: ast.expr) -> list[ast.Name]:
    """Every name the expression reads (not function names)."""
    called = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
    return [n for n in ast.walk(node) if isinstance(n, ast.Name) and id(n) not in called]


@dataclass(frozen=True)
class Scope:
    """What names mean while checking or evaluating: params, and kinds of indicators."""

    params: Mapping[str, float | int]
    indicator_kinds: Mapping[str, Kind]


def infer_kind(node: ast.expr, scope: Scope) -> Kind:
    """Type-check `node` and return what it yields; ExpressionError on any misuse."""
    match node:
        case ast.Constant(value=bool()):
            return Kind.BOOL
        case ast.Constant():
            return Kind.NUMBER
        case ast.Name(id=name):
            return _name_kind(name, scope, node.col_offset)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            _expect(operand, scope, {Kind.BOOL}, "not")
            return Kind.BOOL
        case ast.UnaryOp(operand=operand):
            return _expect(operand, scope, {Kind.NUMBER, Kind.SERIES}, "unary minus")
        case ast.BinOp(left=left, right=right):
            kinds = {_expect(side, scope, {Kind.NUMBER, Kind.SERIES}, "arithmetic")
                     for side in (left, right)}
            return Kind.SERIES if Kind.SERIES in kinds else Kind.NUMBER
        case ast.BoolOp(values=values):
            for value in values:
                _expect(value, scope, {Kind.BOOL}, "and/or")
            return Kind.BOOL
        case ast.Compare(left=left, comparators=comparators):
            for side in (left, *comparators):
                _expect(side, scope, {Kind.NUMBER, Kind.SERIES}, "comparison")
            return Kind.BOOL
        case ast.Call():
            return _call_kind(node, scope)
    raise ExpressionError(f"{type(node).__name__} is not allowed", node.col_offset)


def _name_kind(name: str, scope: Scope, offset: int) -> Kind:
    if name in SERIES_NAMES:
        return Kind.SERIES
    if name in scope.params:
        return Kind.NUMBER
    if name in scope.indicator_kinds:
        return scope.indicator_kinds[name]
    if name in ("true", "false"):
        return Kind.BOOL
    raise ExpressionError(
        f"unknown name '{name}'; use a series ({', '.join(SERIES_NAMES)}), a param or an "
        "indicator defined in this strategy", offset)


def _expect(node: ast.expr, scope: Scope, allowed: set[Kind], where: str) -> Kind:
    kind = infer_kind(node, scope)
    if kind not in allowed:
        wanted = " or ".join(sorted(allowed))
        raise ExpressionError(f"{where} needs a {wanted}, got a {kind}", node.col_offset)
    return kind


def _call_kind(call: ast.Call, scope: Scope) -> Kind:
    assert isinstance(call.func, ast.Name)
    spec = FUNCTIONS[call.func.id]
    series_args, period_args = _split_arguments(call, spec)
    allowed = {Kind.SERIES, Kind.NUMBER} if spec.accepts_scalars else {Kind.SERIES}
    kinds = [_expect(arg, scope, allowed, f"{spec.name}() series argument")
             for arg in series_args]
    periods = [constant_parameter(arg, name, spec, scope.params)
               for name, arg in zip(spec.periods, period_args, strict=False)]
    _rehearse(spec, kinds, periods, call)
    return Kind.BOOL if spec.returns_bool else Kind.SERIES


def _rehearse(spec: FunctionSpec, kinds: list[Kind], periods: list[float | int],
              call: ast.Call) -> None:
    """Call the function on empty series: whatever it refuses of these arguments (macd's
    fast >= slow, crossover of two numbers) is refused now with its position, rather than
    at evaluation. The functions check their arguments before looking at any bar."""
    empty = np.empty(0)
    arguments = [empty] * len(spec.implicit_series)
    arguments += [0.0 if kind == Kind.NUMBER else empty for kind in kinds]
    try:
        spec.func(*arguments, *periods)
    except ValueError as exc:
        raise ExpressionError(f"{spec.name}(): {exc}", call.col_offset) from None


def signature(spec: FunctionSpec) -> str:
    series = [f"series{i + 1}" if spec.series_args > 1 else "series"
              for i in range(spec.series_args)]
    required = len(spec.periods) - len(spec.defaults)
    periods = [name if i < required else f"{name}={spec.defaults[i - required]}"
               for i, name in enumerate(spec.periods)]
    return f"{spec.name}({', '.join(series + periods)})"


def _split_arguments(call: ast.Call, spec: FunctionSpec) -> tuple[list[ast.expr], list[ast.expr]]:
    most = spec.series_args + len(spec.periods)
    least = most - len(spec.defaults)
    count = len(call.args)
    if not least <= count <= most:
        wanted = str(most) if least == most else f"{least} to {most}"
        raise ExpressionError(
            f"{signature(spec)} takes {wanted} arguments, got {count}", call.col_offset)
    return call.args[:spec.series_args], call.args[spec.series_args:]


def constant_parameter(node: ast.expr, name: str, spec: FunctionSpec,
                       params: Mapping[str, float | int]) -> float | int:
    """Fold a period/width argument to a number: literals, params and + - * / of them."""
    value = _fold_constant(node, params)
    if name in spec.float_params:
        if not 0 < value <= MAX_PERIOD:  # false for NaN too
            raise ExpressionError(
                f"{spec.name}() {name} must be above 0 and at most {MAX_PERIOD}, got {value:g}",
                node.col_offset)
        return float(value)
    if not 1 <= value <= MAX_PERIOD or value != int(value):  # the range first: int(inf) raises
        raise ExpressionError(
            f"{spec.name}() {name} must be a whole number from 1 to {MAX_PERIOD}, got {value:g}",
            node.col_offset)
    return int(value)


def _fold_constant(node: ast.expr, params: Mapping[str, float | int]) -> float:
    match node:
        case ast.Constant(value=bool()):
            pass
        case ast.Constant(value=int() | float() as number):
            return float(number)
        case ast.Name(id=name) if name in params:
            return float(params[name])
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_fold_constant(operand, params)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _ARITHMETIC:
            right_value = _fold_constant(right, params)
            if isinstance(op, ast.Div) and right_value == 0:
                raise ExpressionError("division by zero", node.col_offset)
            return float(_ARITHMETIC[type(op)](_fold_constant(left, params), right_value))
    raise ExpressionError("a period must be a number or a param (it cannot vary bar by bar)",
                          node.col_offset)


class Evaluator:
    """Evaluates checked expressions over one symbol's bars; indicators are computed once."""

    def __init__(self, bars: Mapping[str, np.ndarray], params: Mapping[str, float | int],
                 indicators: Mapping[str, ast.expr]):
        self.bars = bars
        self.params = params
        self.indicators = indicators
        self.length = len(bars["close"])
        self._cache: dict[str, Value] = {}

    def series(self, node: ast.expr) -> np.ndarray:
        """The value of `node` as one array with an entry per bar."""
        value = self.value(node)
        if isinstance(value, np.ndarray):
            return value
        dtype = bool if isinstance(value, bool | np.bool_) else float
        return np.full(self.length, value, dtype=dtype)

    def value(self, node: ast.expr) -> Value:
        with np.errstate(all="ignore"):
            return self._value(node)

    def indicator(self, name: str) -> Value:
        """A named indicator's value: the one the rules used, or computed now."""
        if name in self._cache:   # no errstate to enter: the usual case, per bar series
            return self._cache[name]
        with np.errstate(all="ignore"):
            return self._name(name)

    def _value(self, node: ast.expr) -> Value:
        match node:
            case ast.Constant(value=bool() as value):
                return value
            case ast.Constant(value=value):
                # NumPy scalars, like the series: 1 / 0 is inf and overflow is inf, as on
                # arrays, where Python numbers would raise.
                return np.float64(value)
            case ast.Name(id=name):
                return self._name(name)
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                return np.logical_not(self._value(operand))
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -self._value(operand)
            case ast.UnaryOp(operand=operand):
                return self._value(operand)
            case ast.BinOp(left=left, op=op, right=right):
                return _ARITHMETIC[type(op)](self._value(left), self._value(right))
            case ast.BoolOp(op=op, values=values):
                combine = np.logical_and if isinstance(op, ast.And) else np.logical_or
                result = self._value(values[0])
                for value in values[1:]:
                    result = combine(result, self._value(value))
                return result
            case ast.Compare():
                return self._compare(node)
            case ast.Call():
                return self._call(node)
        raise ExpressionError(f"{type(node).__name__} is not allowed", node.col_offset)

    def _name(self, name: str) -> Value:
        if name in SERIES_NAMES:
            return self.bars[name]
        if name in self.params:
            return np.float64(self.params[name])
        if name in ("true", "false"):
            return name == "true"
        if name not in self._cache:
            self._cache[name] = self._value(self.indicators[name])
        return self._cache[name]

    def _compare(self, node: ast.Compare) -> Value:
        left = self._value(node.left)
        result: Value = True
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = self._value(comparator)
            result = np.logical_and(result, _COMPARISONS[type(op)](left, right))
            left = right
        return result

    def _call(self, call: ast.Call) -> Value:
        assert isinstance(call.func, ast.Name)
        spec = FUNCTIONS[call.func.id]
        series_nodes, period_nodes = _split_arguments(call, spec)
        implicit = [self.bars[name] for name in spec.implicit_series]
        series = [self._argument(node, spec) for node in series_nodes]
        periods = [constant_parameter(node, name, spec, self.params)
                   for name, node in zip(spec.periods, period_nodes, strict=False)]
        return spec.func(*implicit, *series, *periods)

    def _argument(self, node: ast.expr, spec: FunctionSpec) -> Value:
        value = self._value(node)
        if isinstance(value, np.ndarray) or spec.accepts_scalars:
            return value
        return np.full(self.length, value, dtype=float)
