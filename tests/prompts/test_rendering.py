"""The sandbox: known escapes, resource bombs and limits all fail safely and fast; strict
variables; save-time validation with line numbers."""

from __future__ import annotations

import threading
import time

import pytest

from tradeloop.prompts.rendering import (
    MAX_RANGE,
    MissingVariableError,
    OutputLimitError,
    RenderError,
    RenderLimits,
    RenderTimeoutError,
    TemplateTooLargeError,
    UnsafeOperationError,
    compile_template,
    render,
    validate_template,
)

LIMITS = RenderLimits(max_template_chars=50_000, max_output_bytes=100_000, timeout_s=0.3)
FAST_S = 3.0  # every hostile template is refused well within this, even on a loaded machine
LITERAL_LIST = "[" + ",".join(["1"] * 1000) + "]"  # within the node limit

ESCAPES = {
    # CVE-2025-27516: |attr reaching str.format, then format walking to globals.
    "attr_format": "{{ ''|attr('format') }}",
    "attr_format_call": "{{ ('{0.__class__.__init__.__globals__}'|attr('format'))(1) }}",
    "attr_class": "{{ ''|attr('__class__') }}",
    "str_format": "{{ '{0.__class__.__base__.__subclasses__}'.format(1) }}",
    "str_format_map": "{{ '{x.__class__}'.format_map({'x': 1}) }}",
    "format_padding": "{{ '{:>999999999}'.format(1) }}",
    "class_subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "dunder_getitem": "{{ ''['__class__'] }}",
    "mro_call": "{{ ().__class__.mro() }}",
    "globals": "{{ range.__globals__ }}",
    "namespace_init_globals": "{{ namespace.__init__.__globals__ }}",
    "self_context": "{{ self.__init__.__globals__ }}",
    "cycler_globals": "{{ cycler.__init__.__globals__.os }}",
    "lipsum_globals": "{{ lipsum.__globals__['os'] }}",
    "dict_update": "{% set d = {} %}{{ d.update({'a': 1}) }}",
    "list_append": "{% set l = [] %}{{ l.append(1) }}",
    "include": "{% include 'secrets.txt' %}",
    "import": "{% import 'macros.j2' as m %}",
    "extends": "{% extends 'base.j2' %}",
}

BOMBS = {
    "power": "{{ 10 ** 100000 }}",
    "range_power": "{% for i in range(10**9) %}{% endfor %}",
    "range_big": "{% for i in range(100000000) %}x{% endfor %}",
    "string_multiplication": "{{ 'a' * 1000000000 }}",
    "string_multiplication_reversed": "{{ 1000000000 * 'a' }}",
    "list_multiplication": "{{ [0] * 1000000000 }}",
    "integer_growth": "{{ 99999999999 * 99999999999 }}",
    "printf_padding": "{{ '%999999999d' % 1 }}",
    "center_method": "{{ 'a'.center(999999999) }}",
    "ljust_method": "{{ 'a'.ljust(999999999) }}",
    "zfill_method": "{{ 'a'.zfill(999999999) }}",
    "indent_filter": "{{ 'a\nb'|indent(999999999) }}",
    "doubling_namespace": "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
                          "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "doubling_plus": "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
                     "{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "replace_growth": "{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(30) %}"
                      "{% set ns.s = ns.s.replace('x', 'xxxxx') %}{% endfor %}",
    "replace_filter_growth": "{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(30) %}"
                             "{% set ns.s = ns.s|replace('x', 'xxxxx') %}{% endfor %}",
    "join_growth": "{% set ns = namespace(s='xxxxxxxxxx') %}{% for i in range(30) %}"
                   "{% set ns.s = range(100)|join(ns.s) %}{% endfor %}",
    "recursive_macro": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "exponential_macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                         "{% endmacro %}{{ f(40) }}",
    "nested_range_loops": "{% for a in range(10000) %}{% for b in range(10000) %}"
                          "{% endfor %}{% endfor %}",
    "nested_literal_loops": f"{{% set l = {LITERAL_LIST} %}}{{% for a in l %}}"
                            "{% for b in l %}{% for c in l %}{% endfor %}{% endfor %}"
                            "{% endfor %}",
    "huge_output": "{% for i in range(10000) %}{{ 'x' * 1 }}" + "y" * 50 + "{% endfor %}",
    "sum_of_lists": "{{ [[1], [2]]|sum(start=[]) }}",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escapes_are_refused(name: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RenderError) as caught:
        render(ESCAPES[name], {}, limits=LIMITS)
    assert time.perf_counter() - started < FAST_S
    assert caught.value.kind in {"unsafe", "undefined_variable", "render_error"}, caught.value


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_resource_bombs_stop_fast(name: str) -> None:
    started = time.perf_counter()
    with pytest.raises(RenderError) as caught:
        render(BOMBS[name], {}, limits=LIMITS)
    assert time.perf_counter() - started < FAST_S, caught.value
    assert caught.value.kind in {"unsafe", "timeout", "output_too_large"}, caught.value


def test_pure_python_loops_are_interrupted_at_the_deadline() -> None:
    started = time.perf_counter()
    with pytest.raises(RenderTimeoutError):
        render(BOMBS["nested_literal_loops"], {}, limits=LIMITS)
    elapsed = time.perf_counter() - started
    assert LIMITS.timeout_s <= elapsed < LIMITS.timeout_s + FAST_S  # minutes without the watchdog


def test_a_timeout_never_leaks_into_later_code() -> None:
    for _ in range(3):
        with pytest.raises(RenderTimeoutError):
            render(BOMBS["nested_range_loops"], {}, limits=LIMITS)
        time.sleep(0.05)  # past the watchdog's next poll: nothing may fire now
        assert render("ok {{ x }}", {"x": 1}, limits=LIMITS) == "ok 1"


def test_renders_in_threads_have_their_own_deadlines() -> None:
    results: dict[str, object] = {}

    def run(name: str, text: str) -> None:
        try:
            results[name] = render(text, {"n": 3}, limits=LIMITS)
        except RenderError as exc:
            results[name] = exc

    threads = [threading.Thread(target=run, args=("bomb", BOMBS["nested_range_loops"])),
               threading.Thread(target=run, args=("fine", "{% for i in range(n) %}{{ i }}"
                                                          "{% endfor %}"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert isinstance(results["bomb"], RenderTimeoutError)
    assert results["fine"] == "012"


def test_output_cap_counts_bytes() -> None:
    limits = RenderLimits(max_output_bytes=1000, timeout_s=1)
    assert render("{{ s }}", {"s": "é" * 500}, limits=limits) == "é" * 500  # 1000 bytes
    with pytest.raises(OutputLimitError):
        render("{{ s }}!", {"s": "é" * 500}, limits=limits)


def test_template_length_is_capped() -> None:
    with pytest.raises(TemplateTooLargeError):
        compile_template("x" * 101, limits=RenderLimits(max_template_chars=100))


def test_range_is_capped() -> None:
    assert render(f"{{{{ range({MAX_RANGE})|length }}}}", {}, limits=LIMITS) == str(MAX_RANGE)
    with pytest.raises(UnsafeOperationError, match="range"):
        render(f"{{{{ range({MAX_RANGE + 1})|length }}}}", {}, limits=LIMITS)


def test_missing_variables_fail_instead_of_rendering_empty() -> None:
    with pytest.raises(MissingVariableError) as caught:
        render("line one\n{{ price }}", {}, limits=LIMITS)
    assert caught.value.line == 2
    with pytest.raises(MissingVariableError):
        render("{{ bar.volume }}", {"bar": {"close": 1}}, limits=LIMITS)


def test_ordinary_templates_render() -> None:
    text = ("{% for b in bars %}{{ b.close|round(1) }}{{ ', ' if not loop.last }}{% endfor %}"
            " | {{ 3 * 4 }} {{ 7 % 3 }} {{ name|upper }} {{ items|join('/') }} "
            "{{ d.a }} {{ none_value|na }} {{ '{}'|length }} {{ 'a b'.split()|list }}")
    variables = {"bars": [{"close": 1.26}, {"close": 2.0}], "name": "aapl", "items": [1, 2],
                 "d": {"a": 5}, "none_value": None}
    assert render(text, variables, limits=LIMITS) == \
        "1.3, 2.0 | 12 1 AAPL 1/2 5 n/a 2 ['a', 'b']"


def test_validation_reports_syntax_errors_with_lines() -> None:
    issues = validate_template("fine\n{% if x %}\nno end", ["x"])
    assert [(i.kind, i.line) for i in issues] == [("syntax_error", 2)]  # the open block
    issues = validate_template("a\n{{ x }\n", ["x"])
    assert issues[0].line == 2 and "syntax error" in issues[0].message


def test_validation_lists_undeclared_variables_with_their_first_line() -> None:
    text = "{{ symbol }}\n{% set local = 1 %}{{ local }}\n{{ price }} {{ volume }}\n{{ price }}"
    issues = validate_template(text, ["symbol"])
    assert [(i.variable, i.line) for i in issues] == [("price", 3), ("volume", 3)]
    assert validate_template(text, ["symbol", "price", "volume"]) == []


def test_validation_refuses_loading_statements() -> None:
    issues = validate_template("{% include 'x' %}\n{% import 'y' as z %}", [])
    assert [(i.kind, i.line) for i in issues] == [("not_allowed", 1), ("not_allowed", 2)]


def test_refusals_name_the_template_line() -> None:
    with pytest.raises(UnsafeOperationError) as caught:
        render("fine\n\n{{ 'a' * 3 }}", {}, limits=LIMITS)
    assert caught.value.line == 3
