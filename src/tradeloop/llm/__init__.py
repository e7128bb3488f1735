"""LLM providers, structured analysis output, guardrails, costs and execution logging.

This package sits below `prompts` and `signals`: it never imports them. Its public entry point
is `tradeloop.llm.service.execute`.
"""
