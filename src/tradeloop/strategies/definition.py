"""Strategy definitions: YAML text → a checked `StrategyDefinition`, or every error found with
its line and column.

The YAML is composed with PyYAML's safe loader into nodes (never constructed into arbitrary
objects); before that, the parser's events are read once to refuse anchors/aliases and custom
tags (no alias bombs, no object tags) and nesting deeper than MAX_YAML_DEPTH (the composer
recurses once per level). Numbers must be finite and of a bounded magnitude
(`expressions.number_problem`), and each expression is checked by `expressions`. Errors are
collected, not raised one at a time, so an editor can underline all of them at once.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter

import yaml

from tradeloop.market_data.timeframes import TIMEFRAMES
from tradeloop.strategies.expressions import (
    SERIES_NAMES,
    TOO_LARGE,
    ExpressionError,
    Kind,
    Scope,
    infer_kind,
    number_problem,
    parse_expression,
    referenced_names,
)
from tradeloop.strategies.indicators import FUNCTIONS

MAX_DEFINITION_CHARS = 20_000
MAX_INDICATORS = 64
MAX_PARAMS = 32
MAX_SYMBOLS = 50
MAX_YAML_DEPTH = 10
MAX_CALLS = 100
TOP_LEVEL_KEYS = ("name", "description", "timeframe", "symbols", "params", "indicators",
                  "entry", "exit", "risk")
RULE_SIDES = ("long", "short")
RISK_KEYS = ("stop_loss_pct", "take_profit_pct", "position_size_pct")
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-_:/=^!]{0,31}$")
_STRATEGY_NAME = re.compile(r"^[\w .\-]{1,100}$")
_RESERVED = frozenset({*SERIES_NAMES, *FUNCTIONS, "true", "false", "and", "or", "not"})
_STRING_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class DefinitionError:
    """One problem, at a 1-based line and column of the YAML text."""

    line: int
    column: int
    message: str

    def as_dict(self) -> dict[str, int | str]:
        return {"line": self.line, "column": self.column, "message": self.message}


class StrategyDefinitionError(ValueError):
    """The definition is invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[DefinitionError]):
        super().__init__("; ".join(f"line {e.line}:{e.column} {e.message}" for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class Expression:
    """A checked expression and where it stands in the YAML text."""

    text: str
    tree: ast.expr
    line: int
    column: int


@dataclass(frozen=True)
class RiskSettings:
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    position_size_pct: float = 100.0


@dataclass(frozen=True)
class StrategyDefinition:
    """A valid strategy: what to trade, on which bars, with which rules and risk settings."""

    name: str
    timeframe: str
    symbols: tuple[str, ...]
    params: dict[str, int | float]
    indicators: dict[str, Expression]
    entry: dict[str, Expression]
    exit: dict[str, Expression]
    risk: RiskSettings
    description: str = ""
    indicator_order: tuple[str, ...] = field(default=())


def parse_definition(text: str) -> StrategyDefinition:
    """Parse and check a YAML definition; StrategyDefinitionError lists every problem."""
    reader = _DefinitionReader(text)
    definition = reader.read()
    if reader.errors or definition is None:
        raise StrategyDefinitionError(sorted(reader.errors, key=lambda e: (e.line, e.column)))
    return definition


def validate_definition(text: str) -> list[DefinitionError]:
    """Every problem in the definition (empty when it is valid)."""
    try:
        parse_definition(text)
    except StrategyDefinitionError as exc:
        return exc.errors
    return []


class _DefinitionReader:
    def __init__(self, text: str):
        self.text = text
        self.errors: list[DefinitionError] = []
        self.calls = 0  # function calls in the expressions read so far

    def error(self, node: yaml.Node | None, message: str) -> None:
        line, column = _position(node)
        self.errors.append(DefinitionError(line, column, message))

    def error_at(self, source: _Source, message: str) -> None:
        self.errors.append(DefinitionError(source.line, source.column, message))

    def read(self) -> StrategyDefinition | None:
        root = self._compose()
        if root is None:
            return None
        if not isinstance(root, yaml.MappingNode):
            self.error(root, "a strategy definition is a mapping of keys such as name, "
                       "symbols, indicators, entry")
            return None
        items = self._mapping(root, TOP_LEVEL_KEYS)
        params = self._params(items.get("params"))
        indicators, order = self._indicators(items.get("indicators"), params)
        kinds = {name: kind for name, (_, kind) in indicators.items()}
        entry = self._rules(items.get("entry"), "entry", params, kinds, root)
        exits = self._rules(items.get("exit"), "exit", params, kinds, None)
        definition = StrategyDefinition(
            name=self._name(items.get("name"), root),
            timeframe=self._timeframe(items.get("timeframe")),
            symbols=self._symbols(items.get("symbols"), root),
            params=params,
            indicators={name: expression for name, (expression, _) in indicators.items()},
            entry=entry, exit=exits, risk=self._risk(items.get("risk")),
            description=self._text(items.get("description"), "description") or "",
            indicator_order=order,
        )
        return None if self.errors else definition

    def _compose(self) -> yaml.Node | None:
        if len(self.text) > MAX_DEFINITION_CHARS:
            self.errors.append(DefinitionError(
                1, 1, f"definition is longer than {MAX_DEFINITION_CHARS} characters"))
            return None
        try:
            refusal = _structure_refusal(self.text)
            if refusal is not None:
                self.error(_MarkNode(refusal[0]), refusal[1])
                return None
            root = yaml.compose(self.text, Loader=_Loader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = exc.problem or exc.context or "invalid YAML"
            self.errors.append(DefinitionError(
                (mark.line + 1) if mark else 1, (mark.column + 1) if mark else 1,
                f"YAML syntax error: {problem}"))
            return None
        except yaml.YAMLError as exc:
            self.errors.append(DefinitionError(1, 1, f"YAML error: {exc}"))
            return None
        if root is None:
            self.errors.append(DefinitionError(1, 1, "definition is empty"))
        return root

    def _mapping(self, node: yaml.Node | None, allowed: tuple[str, ...],
                 what: str = "definition") -> dict[str, yaml.Node]:
        if node is None:
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.error(node, f"{what} must be a mapping")
            return {}
        items: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            problem = _key_problem(key, items, allowed, what)
            if problem:
                self.error(key_node, problem)
            else:
                items[key] = value_node
        return items

    def _number(self, node: yaml.Node, what: str) -> int | float | None:
        """The node's number, or None after an error naming `what`."""
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, f"{what} must be a single value")
            return None
        try:
            value = yaml.SafeLoader("").construct_object(node)  # type: ignore[no-untyped-call]
        except ValueError:  # an integer of more digits than Python converts (4,300)
            self.error(node, f"{what} {TOO_LARGE}")
            return None
        problem = number_problem(value, str(node.value))
        if problem:
            self.error(node, f"{what} {problem}")
            return None
        return value

    def _text(self, node: yaml.Node | None, what: str) -> str | None:
        if node is None:
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, f"{what} must be text")
            return None
        return str(node.value)

    def _name(self, node: yaml.Node | None, root: yaml.Node) -> str:
        name = self._text(node, "name")
        if name is None:
            self.error(root, "missing key 'name'")
            return ""
        if not _STRATEGY_NAME.match(name):
            self.error(node, "name must be 1 to 100 letters, digits, spaces, '.', '-' or '_'")
        return name

    def _timeframe(self, node: yaml.Node | None) -> str:
        timeframe = self._text(node, "timeframe") or "1d"
        if timeframe not in TIMEFRAMES:
            self.error(node, f"unknown timeframe '{timeframe}'; use one of "
                       f"{', '.join(TIMEFRAMES)}")
        return timeframe

    def _symbols(self, node: yaml.Node | None, root: yaml.Node) -> tuple[str, ...]:
        if node is None:
            self.error(root, "missing key 'symbols' (a list such as [AAPL, MSFT])")
            return ()
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.error(node, "symbols must be a non-empty list such as [AAPL, MSFT]")
            return ()
        if len(node.value) > MAX_SYMBOLS:
            self.error(node, f"at most {MAX_SYMBOLS} symbols per strategy")
        symbols: list[str] = []
        for item in node.value:
            symbol = (self._text(item, "a symbol") or "").strip().upper()
            if not _SYMBOL.match(symbol):
                self.error(item, f"'{symbol}' is not a valid symbol")
            elif symbol in symbols:
                self.error(item, f"symbol {symbol} is listed twice")
            else:
                symbols.append(symbol)
        return tuple(symbols)

    def _params(self, node: yaml.Node | None) -> dict[str, int | float]:
        params: dict[str, int | float] = {}
        items = self._mapping(node, (), "params")
        if len(items) > MAX_PARAMS:
            self.error(node, f"at most {MAX_PARAMS} params")
        for name, value_node in items.items():
            if not self._check_identifier(name, value_node, "param"):
                continue
            value = self._number(value_node, f"param '{name}'")
            if value is not None:
                params[name] = value
        return params

    def _check_identifier(self, name: str, node: yaml.Node, what: str) -> bool:
        if not _IDENTIFIER.match(name):
            self.error(node, f"{what} name '{name}' must start with a letter and use only "
                       "letters, digits and '_' (at most 64)")
            return False
        if name in _RESERVED:
            self.error(node, f"{what} name '{name}' is reserved (a series, function or keyword)")
            return False
        return True

    def _indicators(self, node: yaml.Node | None, params: dict[str, int | float]
                    ) -> tuple[dict[str, tuple[Expression, Kind]], tuple[str, ...]]:
        sources = self._expression_sources(node, (), "indicators")
        if len(sources) > MAX_INDICATORS:
            self.error(node, f"at most {MAX_INDICATORS} indicators")
        parsed: dict[str, Expression] = {}
        for name, source in sources.items():
            if name in params:
                self.error_at(source, f"'{name}' is both a param and an indicator")
            elif self._check_identifier(name, source.node, "indicator"):
                expression = self._expression(source, f"indicator '{name}'")
                if expression is not None:
                    parsed[name] = expression
        order = self._dependency_order(parsed)
        kinds: dict[str, Kind] = {}
        checked: dict[str, tuple[Expression, Kind]] = {}
        for name in order:
            kind = self._kind(parsed[name], Scope(params, kinds))
            if kind is not None:
                kinds[name] = kind
                checked[name] = (parsed[name], kind)
        return checked, tuple(name for name in order if name in checked)

    def _dependency_order(self, parsed: dict[str, Expression]) -> list[str]:
        graph = {name: {n.id for n in referenced_names(expr.tree) if n.id in parsed}
                 for name, expr in parsed.items()}
        try:
            return list(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            cycle = exc.args[1]
            first = parsed[cycle[0]]
            self.errors.append(DefinitionError(
                first.line, first.column,
                "indicators refer to each other in a cycle: " + " -> ".join(cycle)))
            return [name for name in parsed if name not in cycle]

    def _rules(self, node: yaml.Node | None, what: str, params: dict[str, int | float],
               kinds: dict[str, Kind], required_at: yaml.Node | None) -> dict[str, Expression]:
        sources = self._expression_sources(node, RULE_SIDES, what)
        if required_at is not None and node is None:
            self.error(required_at, f"missing key '{what}' (e.g. {what}: {{long: ...}})")
        rules: dict[str, Expression] = {}
        for side, source in sources.items():
            expression = self._expression(source, f"{what}.{side}")
            if expression is None:
                continue
            kind = self._kind(expression, Scope(params, kinds))
            if kind is not None and kind != Kind.BOOL:
                self.error_at(source, f"{what}.{side} must be a condition (true/false per "
                              f"bar), got a {kind}; compare it, e.g. close > sma(close, 20)")
            elif kind is not None:
                rules[side] = expression
        return rules

    def _expression_sources(self, node: yaml.Node | None, allowed: tuple[str, ...],
                            what: str) -> dict[str, _Source]:
        """Key → expression text and position. Flow mappings ({long: f(a, b)}) are split on
        top-level commas only, so calls with several arguments need no quotes."""
        if isinstance(node, yaml.MappingNode) and node.flow_style:
            sources = _flow_sources(self.text, node)
            if sources is not None:
                return self._checked_keys(sources, allowed, what)
        sources = {}
        for key, value_node in self._mapping(node, allowed, what).items():
            if not isinstance(value_node, yaml.ScalarNode):
                self.error(value_node, f"{what}.{key} must be an expression")
                continue
            line, column = _position(value_node, _quote_offset(value_node))
            sources[key] = _Source(str(value_node.value), line, column, value_node)
        return sources

    def _checked_keys(self, sources: list[tuple[str, _Source]], allowed: tuple[str, ...],
                      what: str) -> dict[str, _Source]:
        checked: dict[str, _Source] = {}
        for key, source in sources:
            problem = _key_problem(key, checked, allowed, what)
            if problem:
                self.error_at(source, problem)
            else:
                checked[key] = source
        return checked

    def _expression(self, source: _Source, what: str) -> Expression | None:
        try:
            tree = parse_expression(source.text)
        except ExpressionError as exc:
            self.errors.append(DefinitionError(source.line, source.column + exc.offset,
                                               f"{what}: {exc.message}"))
            return None
        calls = sum(isinstance(node, ast.Call) for node in ast.walk(tree))
        self.calls += calls
        if self.calls > MAX_CALLS >= self.calls - calls:  # reported once, where it is crossed
            self.error_at(source, f"{what}: more than {MAX_CALLS} function calls in the "
                          "definition (each one is a pass over every bar)")
        return Expression(source.text, tree, source.line, source.column)

    def _kind(self, expression: Expression, scope: Scope) -> Kind | None:
        try:
            return infer_kind(expression.tree, scope)
        except ExpressionError as exc:
            self.errors.append(DefinitionError(
                expression.line, expression.column + exc.offset, exc.message))
            return None

    def _risk(self, node: yaml.Node | None) -> RiskSettings:
        values: dict[str, float] = {}
        for key, value_node in self._mapping(node, RISK_KEYS, "risk").items():
            value = self._number(value_node, f"risk.{key}")
            if value is None:
                continue
            upper = 1000.0 if key == "take_profit_pct" else 100.0
            if not 0 < value <= upper or (key == "stop_loss_pct" and value >= 100):
                self.error(value_node, f"risk.{key} must be above 0 and at most {upper:g}"
                           + (" (below 100)" if key == "stop_loss_pct" else ""))
                continue
            values[key] = float(value)
        return RiskSettings(**values)


def _key_problem(key: object, seen: dict[str, object], allowed: tuple[str, ...],
                 what: str) -> str | None:
    """Why `key` cannot be taken in a mapping of `what` (None when it can)."""
    if not isinstance(key, str):
        return f"keys of {what} must be names"
    if key in seen:
        return f"duplicate key '{key}' in {what}"
    if allowed and key not in allowed:
        return f"unknown key '{key}' in {what}; allowed: {', '.join(allowed)}"
    return None


@dataclass(frozen=True)
class _Source:
    """An expression's text and the 1-based position of its first character."""

    text: str
    line: int
    column: int
    node: yaml.Node


def _flow_sources(text: str, node: yaml.MappingNode) -> list[tuple[str, _Source]] | None:
    """`{key: expr, key: expr}` split at top-level commas; None if it is not that simple."""
    start, end = node.start_mark.index + 1, node.end_mark.index - 1
    if text[start - 1] != "{" or text[end] != "}":
        return None
    sources = []
    for piece_start, piece in _top_level_pieces(text, start, end):
        key, colon, value = piece.partition(":")
        if not colon or not key.strip() or "\n" in piece:
            return None
        value_start = piece_start + len(key) + 1 + (len(value) - len(value.lstrip()))
        expression = value.strip()
        if expression[:1] in ("'", '"') and expression[-1:] == expression[:1]:
            expression, value_start = expression[1:-1], value_start + 1
        line = text.count("\n", 0, value_start) + 1
        column = value_start - (text.rfind("\n", 0, value_start) + 1) + 1
        sources.append((key.strip(), _Source(expression, line, column, node)))
    return sources


def _top_level_pieces(text: str, start: int, end: int) -> Iterator[tuple[int, str]]:
    depth, piece_start, quote = 0, start, ""
    for index in range(start, end + 1):
        char = text[index] if index < end else ","
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            if text[piece_start:index].strip():
                yield piece_start, text[piece_start:index]
            piece_start = index + 1


_TOO_DEEP = f"YAML is nested deeper than {MAX_YAML_DEPTH} levels of lists/mappings"


class _FlowTooDeepError(Exception):
    def __init__(self, mark: yaml.Mark):
        super().__init__(_TOO_DEEP)
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """The safe loader, stopping at the first flow collection (`[`, `{`) nested deeper than
    MAX_YAML_DEPTH: the scanner looks up to 1,024 characters ahead for a key, over every open
    collection, so a run of `[[[[…` would cost it ~0.6 s before the parser saw any depth."""

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        if self.flow_level >= MAX_YAML_DEPTH:
            raise _FlowTooDeepError(self.get_mark())  # type: ignore[no-untyped-call]
        super().fetch_flow_collection_start(token_class)


def _structure_refusal(text: str) -> tuple[yaml.Mark, str] | None:
    """Where and why the YAML is refused before it is composed: the first anchor, alias or
    tag, or collection nested deeper than MAX_YAML_DEPTH. The parser emits events without
    recursing, so this stops at the first offending level, whatever the depth of the text."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if (getattr(event, "anchor", None) is not None
                    or getattr(event, "tag", None) is not None):
                return event.start_mark, "YAML anchors, aliases and tags are not allowed"
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    return event.start_mark, _TOO_DEEP
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except _FlowTooDeepError as exc:
        return exc.mark, _TOO_DEEP
    return None


class _MarkNode(yaml.Node):
    def __init__(self, mark: yaml.Mark):
        super().__init__("", "", mark, mark)  # type: ignore[no-untyped-call]


def _quote_offset(node: yaml.ScalarNode) -> int:
    return 1 if node.style in ("'", '"') else 0


def _position(node: yaml.Node | None, offset: int = 0) -> tuple[int, int]:
    """1-based line and column of a node (plus `offset` columns)."""
    if node is None or node.start_mark is None:
        return 1, 1
    return node.start_mark.line + 1, node.start_mark.column + 1 + offset


def iter_expressions(definition: StrategyDefinition) -> Iterator[tuple[str, Expression]]:
    """Every expression of the definition with a label, indicators first."""
    for name in definition.indicator_order:
        yield f"indicators.{name}", definition.indicators[name]
    for side, expression in definition.entry.items():
        yield f"entry.{side}", expression
    for side, expression in definition.exit.items():
        yield f"exit.{side}", expression
