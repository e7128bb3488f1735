"""Hostile templates: the reproductions of issue 13 and more, by the stage that stops them.

Every template reads only `x` (render it with `VARIABLES`). `BIG` builds a ~200,000-character
string within the limits, the raw material of most growth attempts.
"""

from __future__ import annotations

VARIABLES = {"x": [1]}
BIG = "{% set s = range(9000)|join('xxxxxxxxxxxxxxxxxxxx') %}"
NESTED_LITERAL = "[" + ",".join(["1"] * 1000) + "]"


def _nested(opening: str, closing: str, depth: int, inner: str = "{{ x }}") -> str:
    return opening * depth + inner + closing * depth


def _loop(times: int, body: str) -> str:
    return f"{{% for i in range({times}) %}}{body}{{% endfor %}}"


# Refused when validated (and so when saved or compiled), each with a line.
REFUSED_AT_VALIDATION = {
    "issue_nested_for_25": _nested("{% for i in x %}", "{% endfor %}", 25),
    "issue_parentheses_100": "{{ " + _nested("(", ")", 100, "1") + " }}",
    "issue_attribute_chains_3333": "{{a.b.c.d.e}}" * 3333,
    "nested_if_60": _nested("{% if x %}", "{% endif %}", 60),
    "nested_with_40": _nested("{% with a = 1 %}", "{% endwith %}", 40),
    "nested_macros_15": _nested("{% macro m() %}", "{% endmacro %}", 15),
    "nested_filter_blocks_40": _nested("{% filter upper %}", "{% endfilter %}", 40),
    "nested_set_blocks_40": _nested("{% set a %}", "{% endset %}", 40),
    "nested_call_blocks_12": "{% macro m() %}{{ caller() }}{% endmacro %}"
                             + _nested("{% call m() %}", "{% endcall %}", 12),
    "nested_lists_100": "{{ " + _nested("[", "]", 100, "1") + " }}",
    "not_chain_500": "{{ " + "not " * 500 + "x }}",
    "negation_chain_500": "{{ " + "- " * 500 + "1 }}",
    "conditional_chain_300": "{{ " + "1 if x else " * 300 + "1 }}",
    "filter_chain_100": "{{ x" + "|first" * 100 + " }}",
    "attribute_chain_100": "{{ x" + ".a" * 100 + " }}",
    "item_chain_100": "{{ x" + "[0]" * 100 + " }}",
    "call_chain_100": "{{ x" + "()" * 100 + " }}",
    "plus_chain_300": "{{ " + " + ".join(["1"] * 300) + " }}",
    "and_chain_300": "{{ " + " and ".join(["x"] * 300) + " }}",
    "many_outputs": "{{ x }}" * 6000,
    "many_sets": "".join(f"{{% set v{i} = x %}}" for i in range(1500)),
    "long_literal_list": "{{ [" + ",".join(["1"] * 3000) + "]|length }}",
    "too_long": "x" * 60_000,
    "format_filter": "{{ '%s'|format(x) }}",
    "center_filter": "{{ 'x'|center(1000000000) }}",
    "wordwrap_filter": "{{ 'x'|wordwrap(1) }}",
    "filesizeformat_filter": "{{ 1|filesizeformat }}",
}

# Valid templates that a size, memory, depth or safety bound refuses while rendering: no
# deadline needed.
REFUSED_AT_RENDER = {
    "issue_doubling_macro": "{% macro d(s, n) %}{% if n > 0 %}{{ d(s ~ s, n - 1) }}"
                            "{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ d('x', 29) }}",
    "issue_tojson_indent": "{{ range(30)|list|tojson(indent=10000000)|length }}",
    "tojson_indent_many_items": "{{ range(9000)|list|tojson(indent=64)|length }}",
    "string_repetition": "{{ 'x' * 1000000000 }}",
    "string_repetition_power": "{{ 'x' * 10 ** 9 }}",
    "list_repetition": "{{ [1] * 1000000000 }}",
    "printf_padding": "{{ '%999999999s' % x }}",
    "format_method": "{{ '{:>999999999}'.format(1) }}",
    "center_method": "{{ 'x'.center(999999999) }}",
    "indent_width": "{{ 'a\nb'|indent(1000000000) }}",
    "indent_many_lines": "{% set lines = range(9000)|join('\n') %}{{ lines|indent(64) }}",
    "join_big_separator": BIG + "{{ range(10000)|join(s)|length }}",
    "join_mapped_replacements": BIG + "{{ range(10000)|map('string')|map('replace', '1', s)"
                                      "|join|length }}",
    "list_of_big_strings": BIG + "{{ range(10000)|map('string')|map('replace', '1', s)"
                                 "|list|length }}",
    "string_method_join": BIG + "{{ s.join(range(10000)|map('string'))|length }}",
    "string_doubling_tilde": "{% set ns = namespace(s='x') %}"
                             + _loop(60, "{% set ns.s = ns.s ~ ns.s %}") + "{{ ns.s|length }}",
    "string_doubling_plus": "{% set ns = namespace(s='x') %}"
                            + _loop(60, "{% set ns.s = ns.s + ns.s %}") + "{{ ns.s|length }}",
    "list_doubling": "{% set ns = namespace(l=[1]) %}"
                     + _loop(60, "{% set ns.l = ns.l + ns.l %}") + "{{ ns.l|length }}",
    "set_growth": BIG + "{% set s2 = s ~ s %}{% set s3 = s2 ~ s2 %}{{ s3|length }}",
    "set_accumulation": "{% set ns = namespace(s='') %}"
                        + _loop(10000, "{% set ns.s = ns.s ~ loop.index %}")
                        + "{{ ns.s|length }}",
    "set_block_growth": BIG + "{% set b %}" + _loop(10000, "{{ s }}") + "{% endset %}"
                              "{{ b|length }}",
    "filter_block_growth": BIG + "{% filter upper %}" + _loop(10000, "{{ s }}")
                                 + "{% endfilter %}",
    "call_block_growth": BIG + "{% macro m() %}{{ caller() }}{{ caller() }}{% endmacro %}"
                               "{% call m() %}{{ s }}{% endcall %}",
    "macro_output_loop": BIG + "{% macro f() %}" + _loop(10000, "{{ s }}")
                               + "{% endmacro %}{{ f()|length }}",
    "macro_recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "exponential_macro": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                         "{% endmacro %}{{ f(40) }}",
    "recursive_loop": "{% for y in [[1]] recursive %}{{ loop([[y]]) }}{% endfor %}",
    "shared_list_printed": "{% set ns = namespace(l=[1]) %}"
                           + _loop(60, "{% set ns.l = [ns.l, ns.l] %}")
                           + "{{ ns.l|string|length }}",
    "shared_tuple_hashed": "{% set ns = namespace(t=(1,)) %}"
                           + _loop(60, "{% set ns.t = (ns.t, ns.t) %}")
                           + "{{ [ns.t]|unique|list|length }}",
    "shared_lists_compared": "{% set ns = namespace(a=[1], b=[1]) %}"
                             + _loop(60, "{% set ns.a = [ns.a, ns.a] %}"
                                         "{% set ns.b = [ns.b, ns.b] %}") + "{{ ns.a == ns.b }}",
    "deep_list": "{% set ns = namespace(l=[]) %}" + _loop(5000, "{% set ns.l = [ns.l] %}")
                 + "{{ [ns.l]|unique|list|length }}",
    "dict_views_shared": "{% set ns = namespace(d=dict(a=1)) %}"
                         + _loop(40, "{% set ns.d = dict(a=ns.d.items(), b=ns.d.items()) %}")
                         + "{{ ns.d|string|length }}",
    "namespace_in_list": "{% set ns = namespace(v=1) %}{% set l = [ns, ns] %}{{ l }}",
    "namespace_many_references": BIG + "{% set ns = namespace() %}"
                                 + "".join(f"{{% set ns.a{i} = s %}}" for i in range(10))
                                 + "{{ ns|string|length }}",
    "dict_of_big_strings": BIG + "{{ dict(a=s, b=s, c=s)|string|length }}",
    "replace_growth": BIG + "{{ s|replace('x', 'xx')|length }}",
    "replace_empty_method": BIG + "{{ s.replace('', s)|length }}",
    "escape_growth": BIG + "{{ s|replace('x', '<')|e|length }}",
    "urlencode_growth": BIG + "{{ s|replace('x', '€')|urlencode|length }}",
    "slices_kept": BIG + "{% set ns = namespace(l=[]) %}"
                         + _loop(10000, "{% set ns.l = ns.l + [s[i:]] %}") + "ok",
    "round_precision": "{{ 5|round(-1000000000) }}",
    "round_ceil_precision": "{{ 5|round(1000000000, 'ceil') }}",
    "range_huge": "{{ range(1000000000)|list|length }}",
    "integer_product": "{{ 99999999999 * 99999999999 }}",
    "sum_of_lists": "{{ [[1], [2]]|sum(start=[]) }}",
    "huge_output": _loop(10000, "{{ 'x' }}" + "y" * 50),
    # Distinct strings of 4-byte characters kept in variables: what the memory budget is for.
    "distinct_wide_strings": "{% set w = range(5000)|join('😀😀😀😀😀😀😀😀😀😀') %}"
                             + "".join(f"{{% set w{i} = w ~ {i} %}}" for i in range(200))
                             + "{{ w199|length }}",
}

# Valid templates that build (almost) nothing but loop for ever: the deadline stops them.
STOPPED_BY_DEADLINE = {
    "nested_range_loops": _loop(10000, _loop(10000, "")),
    "nested_literal_loops": f"{{% set l = {NESTED_LITERAL} %}}"
                            "{% for a in l %}{% for b in l %}{% for c in l %}{% endfor %}"
                            "{% endfor %}{% endfor %}",
    "empty_output_loops": "{% set e = '' %}" + _loop(10000, _loop(10000, "{{ e }}")),
    "macro_constant_output": "{% macro f() %}" + _loop(10000, _loop(10000, "x"))
                             + "{% endmacro %}{{ f()|length }}",
    "integer_doubling": "{% set ns = namespace(n=1) %}"
                        + _loop(10000, _loop(10000, "{% set ns.n = 0 - ns.n - ns.n %}"))
                        + "{{ ns.n > 0 }}",
    "wide_macro_recursion": "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                            "{% endmacro %}{{ f(18) }}",
}

ALL = {**REFUSED_AT_VALIDATION, **REFUSED_AT_RENDER, **STOPPED_BY_DEADLINE}
