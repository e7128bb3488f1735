"""The sandbox prompt templates compile and render in (SPEC §7), split by concern:

- `limits`: the limits of one render, the errors that enforce them, and the budget every
  value a render builds is charged to;
- `structure`: the static bounds checked before compiling (size, nesting, node count);
- `filters`: the filter allowlist, with every size-taking argument bounded;
- `environment`: the Jinja2 environment and code generator that route every value a template
  builds through the budget;
- `watchdog`: the thread that interrupts renders past their deadline.

`tradeloop.prompts.rendering` is the interface the rest of the code uses.
"""
