"""The sandbox's bounds (issue 13, item 3): every hostile template of the corpus is refused —
at validation, by a size/memory/depth bound, or by the deadline — with a line, within its
time, and without building more than the render's memory budget (traced allocations)."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from tests.prompts import hostile
from tradeloop.prompts.rendering import (
    RenderError,
    RenderLimits,
    RenderTimeoutError,
    TemplateTooComplexError,
    compile_template,
    render,
    validate_template,
)
from tradeloop.prompts.sandbox.structure import MAX_BLOCK_NESTING, MAX_NODES, MAX_TOKENS
from tradeloop.prompts.sandbox.watchdog import Watchdog

MAX_EXTRA_MB = 64  # what one render may cost at most, whatever the template
FAST_S = 3.0  # the deadline is 0.5 s; slack for a loaded machine
DECLARED = ["x"]


def traced(function: Callable[[], Any]) -> tuple[BaseException | None, float, float]:
    """Run `function`: the exception it raised, its peak traced allocations (MB) and time."""
    tracemalloc.start()
    started = time.perf_counter()
    caught: BaseException | None = None
    try:
        function()
    except Exception as exc:  # the tests inspect what was raised
        caught = exc
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return caught, peak, elapsed


@pytest.mark.parametrize("name", sorted(hostile.REFUSED_AT_VALIDATION))
def test_refused_at_validation_with_a_line(name: str) -> None:
    text = hostile.REFUSED_AT_VALIDATION[name]
    issues = validate_template(text, DECLARED)
    assert issues and all(issue.line for issue in issues), issues
    assert issues[0].kind in {"template_too_complex", "template_too_large", "syntax_error"}
    with pytest.raises(RenderError) as compiling:
        compile_template(text)
    assert (compiling.value.kind, compiling.value.line) == (issues[0].kind, issues[0].line)
    started = time.perf_counter()
    with pytest.raises(RenderError) as rendering:
        render(text, hostile.VARIABLES)
    assert time.perf_counter() - started < FAST_S
    assert rendering.value.kind == issues[0].kind


@pytest.mark.parametrize("name", sorted(hostile.REFUSED_AT_RENDER))
def test_growth_is_refused_by_the_bounds_not_the_clock(name: str) -> None:
    text = hostile.REFUSED_AT_RENDER[name]
    assert validate_template(text, DECLARED) == []
    # A long deadline: the size and memory bounds alone must stop the template.
    caught, peak, _elapsed = traced(
        lambda: render(text, hostile.VARIABLES, limits=RenderLimits(timeout_s=30)))
    assert isinstance(caught, RenderError), caught
    assert caught.kind in {"output_too_large", "memory_limit", "unsafe"}, caught
    assert caught.line is not None, caught
    assert peak < MAX_EXTRA_MB, f"{peak:.1f} MB traced"


@pytest.mark.parametrize("name", sorted(hostile.STOPPED_BY_DEADLINE))
def test_loops_that_build_nothing_stop_at_the_deadline(name: str) -> None:
    text = hostile.STOPPED_BY_DEADLINE[name]
    assert validate_template(text, DECLARED) == []
    caught, peak, elapsed = traced(lambda: render(text, hostile.VARIABLES))
    assert isinstance(caught, RenderError) and caught.line is not None, caught
    assert caught.kind in {"timeout", "memory_limit"}, caught
    assert elapsed < FAST_S and peak < MAX_EXTRA_MB


def test_the_memory_budget_is_what_stops_distinct_values() -> None:
    text = hostile.REFUSED_AT_RENDER["distinct_wide_strings"]
    small = RenderLimits(max_memory_bytes=8 * 2**20, timeout_s=30)
    caught, peak, _elapsed = traced(lambda: render(text, hostile.VARIABLES, limits=small))
    assert isinstance(caught, RenderError) and caught.kind == "memory_limit", caught
    assert peak < 8 * 1.25, f"{peak:.1f} MB traced for an 8 MB budget"


def test_the_deadline_includes_compiling() -> None:
    text = "{{ x.a }}\n" * 600  # within every bound, and some time to compile
    assert validate_template(text, DECLARED) == []
    with pytest.raises(RenderTimeoutError) as caught:
        render(text, {"x": {"a": 1}}, limits=RenderLimits(timeout_s=0.005))
    assert caught.value.line is not None
    assert render(text, {"x": {"a": 1}}, limits=RenderLimits(timeout_s=30)).count("1") == 600


class TestStructureLines:
    def test_block_nesting_names_the_line_of_the_first_block_too_deep(self) -> None:
        text = "intro\n" + "".join("{% for i in x %}\n" for _ in range(MAX_BLOCK_NESTING + 1)) \
            + "{% endfor %}" * (MAX_BLOCK_NESTING + 1)
        [issue] = validate_template(text, DECLARED)
        assert (issue.kind, issue.line) == ("template_too_complex", MAX_BLOCK_NESTING + 2)
        nested_enough = text.replace("{% for i in x %}\n", "", 1).replace("{% endfor %}", "", 1)
        assert validate_template(nested_enough, DECLARED) == []

    def test_node_count_names_the_line_where_it_is_passed(self) -> None:
        per_line = "a{{ x }}" * 5 + "\n"  # 10 nodes a line, 20 tokens
        text = per_line * (MAX_NODES // 10 + 5)
        assert len(text) < 50_000 and 20 * (MAX_NODES // 10 + 5) < MAX_TOKENS
        with pytest.raises(TemplateTooComplexError) as caught:
            compile_template(text)
        assert caught.value.line == MAX_NODES // 10

    def test_template_size_names_the_line_where_the_limit_is_passed(self) -> None:
        text = ("x" * 99 + "\n") * 600  # 60,000 characters, 100 a line
        [issue] = validate_template(text, DECLARED)
        assert (issue.kind, issue.line) == ("template_too_large", 501)

    def test_render_errors_name_their_line(self) -> None:
        text = "a\n{% set ns = namespace(s='x') %}\n{% for i in range(60) %}\n" \
               "{% set ns.s = ns.s ~ ns.s %}\n{% endfor %}"
        with pytest.raises(RenderError) as caught:
            render(text, {})
        assert (caught.value.kind, caught.value.line) == ("output_too_large", 4)
        with pytest.raises(RenderError) as output:
            render("a\n{% for i in range(10000) %}" + "y" * 50 + "{% endfor %}", {})
        assert (output.value.kind, output.value.line) == ("output_too_large", 2)


class TestOrdinaryTemplatesStillWork:
    def test_values_within_the_limits(self) -> None:
        text = ("{% set ns = namespace(items=[]) %}{% for i in range(3) %}"
                "{% set ns.items = ns.items + [i ~ '!'] %}{% endfor %}{{ ns.items|join(', ') }}|"
                "{{ {'a': [1, 2], 'b': (3,)}|tojson(indent=2)|length }}|"
                "{% macro row(b) %}{{ b.close|round(1) }}{% endmacro %}"
                "{% for b in bars %}{{ row(b) }} {% endfor %}|{{ 'a\nb'|indent(2) }}|"
                "{% set block %}{{ 'x' ~ 1 }}{% endset %}{{ block }}")
        assert render(text, {"bars": [{"close": 1.26}, {"close": 2.0}]}) == \
            "0!, 1!, 2!|49|1.3 2.0 |a\n  b|x1"

    def test_a_namespace_holds_values_up_to_the_limit(self) -> None:
        text = "{% set ns = namespace(a='', b='') %}{% set ns.a = s %}{% set ns.b = s %}ok"
        assert render(text, {"s": "x" * 100}, limits=RenderLimits(max_output_bytes=1000)) \
            == "ok"
        with pytest.raises(RenderError, match="longer than 1000"):
            render(text, {"s": "x" * 600}, limits=RenderLimits(max_output_bytes=1000))


def test_the_watchdog_fires_again_when_its_exception_was_swallowed() -> None:
    # Python swallows exceptions raised in weakref callbacks and __del__ ("Exception
    # ignored in …"); a render must not run on unbounded when the timeout lands there.
    watchdog = Watchdog(RenderTimeoutError)
    watched = SimpleNamespace(deadline=time.monotonic(), fired=False, closed=False)
    caught: list[float] = []

    def work() -> None:
        watchdog.register(watched)
        give_up = time.monotonic() + 3
        try:
            for _ in range(2):
                try:
                    while time.monotonic() < give_up:
                        pass
                except RenderTimeoutError:
                    caught.append(time.monotonic())  # swallowed
        finally:
            watched.closed = True
            watchdog.unregister()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(5)
    assert len(caught) == 2, caught
    assert caught[1] - caught[0] >= Watchdog.REFIRE_S * 0.9
