"""Static bounds on a template's text, checked before it is compiled — on save, on
`/validate` and on every compile — each reported with the line where it is passed.

Jinja's parser and compiler recurse once per nesting level, and Python refuses the code they
generate past 20 nested loops (`too many statically nested blocks`) or 100 indentation levels;
parse and compile time grow with the number of tokens and nodes (and faster with deep
expressions). So a template may have at most `MAX_TOKENS` tokens (counted by the lexer before
the parser runs) and `MAX_NODES` nodes, nest expressions and statements `MAX_DEPTH` levels and
blocks (`for`, `if`, `macro`, `call`, `filter`, `with`, `set` blocks) `MAX_BLOCK_NESTING`
levels: anything within these compiles, well inside the render deadline.
"""

from __future__ import annotations

from jinja2 import TemplateSyntaxError, nodes
from jinja2.lexer import ignored_tokens
from jinja2.parser import Parser

from tradeloop.prompts.sandbox.environment import sandbox
from tradeloop.prompts.sandbox.limits import (
    InvalidSyntaxError,
    RenderLimits,
    RenderTimeoutError,
    TemplateTooComplexError,
    TemplateTooLargeError,
)

MAX_TOKENS = 5_000
MAX_NODES = 2_000
MAX_DEPTH = 30
MAX_BLOCK_NESTING = 10
_BLOCKS = (nodes.For, nodes.If, nodes.Macro, nodes.CallBlock, nodes.FilterBlock, nodes.With,
           nodes.AssignBlock, nodes.Scope, nodes.ScopedEvalContextModifier, nodes.Block)


def checked_tree(text: str, limits: RenderLimits) -> nodes.Template:
    """The parsed template, once its size, nesting and node count are within bounds."""
    _check_size(text, limits)
    _check_token_count(text)
    tree = _parse(text)
    _check_shape(tree)
    return tree


def _check_size(text: str, limits: RenderLimits) -> None:
    if len(text) > limits.max_template_chars:
        line = text.count("\n", 0, limits.max_template_chars) + 1
        raise TemplateTooLargeError(f"the template has {len(text)} characters; the limit is "
                                    f"{limits.max_template_chars} (passed on line {line})",
                                    line=line)


def _check_token_count(text: str) -> None:
    count = 0
    try:
        for line, token_type, _value in sandbox().lex(text):
            if token_type in ignored_tokens:
                continue
            count += 1
            if count > MAX_TOKENS:
                raise TemplateTooComplexError(
                    f"the template has more than {MAX_TOKENS} tokens (names, literals, "
                    "operators, tag delimiters, text runs); split it or simplify it",
                    line=line)
    except TemplateSyntaxError as exc:
        raise InvalidSyntaxError(f"syntax error: {exc.message}", line=exc.lineno) from None


def _parse(text: str) -> nodes.Template:
    parser = Parser(sandbox(), text)
    try:
        return parser.parse()
    except TemplateSyntaxError as exc:
        raise InvalidSyntaxError(f"syntax error: {exc.message}", line=exc.lineno) from None
    except RecursionError:
        raise _too_deep(parser.stream.current.lineno) from None
    except RenderTimeoutError:
        raise RenderTimeoutError("parsing the template took longer than the render time "
                                 "limit; make it smaller",
                                 line=parser.stream.current.lineno) from None


def _check_shape(tree: nodes.Template) -> None:
    """Count nodes and nesting without recursing (the tree may be deep)."""
    count = 0
    pending: list[tuple[nodes.Node, int, int]] = [(tree, 0, 0)]
    while pending:
        node, depth, blocks = pending.pop()
        count += 1
        if count > MAX_NODES:
            raise TemplateTooComplexError(
                f"the template has more than {MAX_NODES} elements (text, variables, "
                "operators, tags); split it or simplify it", line=node.lineno)
        if depth > MAX_DEPTH:
            raise _too_deep(node.lineno)
        if isinstance(node, _BLOCKS):
            blocks += 1
            if blocks > MAX_BLOCK_NESTING:
                raise TemplateTooComplexError(f"blocks nest more than {MAX_BLOCK_NESTING} "
                                              "levels deep", line=node.lineno)
        # Children pushed last-first, so nodes are counted in reading order.
        pending.extend((child, depth + 1, blocks)
                       for child in reversed(list(node.iter_child_nodes())))


def _too_deep(line: int) -> TemplateTooComplexError:
    return TemplateTooComplexError(f"expressions and tags nest more than {MAX_DEPTH} levels "
                                   "deep", line=line)
