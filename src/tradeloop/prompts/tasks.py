"""Loaded in every process (API, worker, CLI): keeps the templates' usage statistics current
by listening to the execution log."""

from __future__ import annotations

from tradeloop.llm import service as llm
from tradeloop.prompts.playground import record_execution

llm.add_execution_listener(record_execution)
