"""The sandbox's invariant, over generated templates: a template that validates compiles,
and renders or fails with a RenderError carrying a line — never any other exception; what
does not validate is refused by compiling too, each problem with a line.

Templates are drawn from a grammar of Jinja's statements and expressions, nested along a
spine up to a few levels past the structure limits, so both sides of every limit are hit.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tradeloop.prompts.rendering import (
    RenderError,
    RenderLimits,
    compile_template,
    render,
    validate_template,
)
from tradeloop.prompts.sandbox.structure import MAX_BLOCK_NESTING, MAX_DEPTH

VARIABLES: dict[str, Any] = {"x": 3, "y": "text", "items": [1, [2, 3], {"k": "v"}]}
# A generous deadline: the invariant is about structure; the clock is tested elsewhere.
LIMITS = RenderLimits(timeout_s=20)
COMPILE_REFUSALS = {"syntax_error", "template_too_complex", "template_too_large"}

LEAVES = ("x", "y", "items", "1", "2.5", "'a'", "none", "true", "(-7)", "[]", "{}", "range(3)",
          "999999999999999999999", "namespace(v=1)", "dict(a=1)")
FILTERS = ("upper", "length", "first", "list", "string", "tojson", "default(1)", "round(2)",
           "sort", "unique|list", "join(', ')", "replace('a', 'bb')", "indent(2)",
           "tojson(indent=2)", "map('string')|join", "trim", "center(5)", "format(1)",
           "wordwrap(3)", "int", "abs", "reverse|list", "dictsort", "items|list", "sum")
BINARY = ("+", "-", "*", "/", "//", "%", "~", "and", "or", "==", "<", "in", "**")


@st.composite
def expressions(draw: st.DrawFn, depth: int) -> str:
    """An expression nested `depth` levels along one operand."""
    if depth <= 0:
        return draw(st.sampled_from(LEAVES))
    inner = draw(expressions(depth - 1))
    other = draw(st.sampled_from(LEAVES))
    # Operators are parenthesized so that postfix forms apply to them as a whole.
    forms = {
        "paren": f"({inner})",
        "binary": f"({inner} {draw(st.sampled_from(BINARY))} {other})",
        "not": f"(not {inner})",
        "negative": f"(-{inner})",
        "filter": f"({inner}|{draw(st.sampled_from(FILTERS))})",
        "attribute": f"{inner}.k",
        "item": f"{inner}[0]",
        "slice": f"{inner}[1:]",
        "list": f"[{inner}, {other}]",
        "tuple": f"({inner}, {other})",
        "dict": f"{{'k': {inner}}}",
        "conditional": f"({other} if {inner} else {other})",
        "call": f"{inner}.split()",
        "test": f"({inner} is defined)",
    }
    return forms[draw(st.sampled_from(sorted(forms)))]


BLOCKS = {  # opening and closing, ARG an expression, NUM the level (unique names)
    "for": ("{% for v in ARG %}{{ v }}{{ loop.index }}", "{% endfor %}"),
    "for_else": ("{% for v in ARG %}{{ v }}", "{% else %}none{% endfor %}"),
    "recursive_for": ("{% for v in ARG recursive %}{{ v }}", "{% endfor %}"),
    "if": ("{% if ARG %}", "{% elif x %}b{% else %}c{% endif %}"),
    "macro": ("{% macro mNUM(a=ARG) %}{{ a }}", "{% endmacro %}{{ mNUM() }}"),
    "call": ("{% macro cNUM(a=ARG) %}{{ caller() }}{% endmacro %}{% call cNUM() %}",
             "{% endcall %}"),
    "filter": ("{% filter upper %}{{ ARG }}", "{% endfilter %}"),
    "set_block": ("{% set bNUM %}{{ ARG }}", "{% endset %}{{ bNUM }}"),
    "with": ("{% with w = ARG %}{{ w }}", "{% endwith %}"),
    "namespace": ("{% set ns = namespace(v=ARG) %}{% set ns.v = ns.v ~ 'z' %}{% if ns %}",
                  "{% endif %}{{ ns.v }}"),
}


@st.composite
def templates(draw: st.DrawFn) -> str:
    """Blocks nested along a spine around an output of a nested expression, with text and
    shallow siblings on the way."""
    block_kinds = draw(st.lists(st.sampled_from(sorted(BLOCKS)),
                                max_size=MAX_BLOCK_NESTING + 3))
    text = "{{ " + draw(expressions(draw(st.integers(0, MAX_DEPTH + 4)))) + " }}"
    for level, kind in enumerate(reversed(block_kinds)):
        opening, closing = (part.replace("NUM", str(level)) for part in BLOCKS[kind])
        argument = draw(expressions(draw(st.integers(0, 3))))
        sibling = draw(st.sampled_from(("", "text\n", "{{ x }}", "{% set s = y %}")))
        text = opening.replace("ARG", argument) + sibling + text + closing
    return draw(st.sampled_from(("", "Intro\n"))) + text


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # Python's, on e.g. `2.5[0]`
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=templates())
def test_what_validates_compiles_and_renders_or_fails_with_a_line(text: str) -> None:
    issues = validate_template(text, VARIABLES, limits=LIMITS)
    event(" ".join(sorted({issue.kind for issue in issues})) or "valid")
    assert all(issue.line for issue in issues), issues
    if any(issue.kind in COMPILE_REFUSALS for issue in issues):
        with pytest.raises(RenderError) as refused:
            compile_template(text, limits=LIMITS)
        assert refused.value.line is not None
        return
    compiled = compile_template(text, limits=LIMITS)
    try:
        render(compiled, VARIABLES)
        event("rendered")
    except RenderError as exc:
        event(f"render failed: {exc.kind}")
        assert exc.line is not None, exc
