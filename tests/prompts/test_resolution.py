"""Resolution order (strategy default → global default → clear error), the seed's log lines,
the per-process cache, and two real processes seeing each other's edits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy.orm import Session

from tests.conftest import fresh_postgres_database
from tradeloop import migrate
from tradeloop.accounts import service as accounts
from tradeloop.db import Database
from tradeloop.prompts import resolution, service
from tradeloop.prompts.cache import template_cache
from tradeloop.prompts.resolution import (
    PromptNotConfiguredError,
    PromptRenderFailedError,
    PromptVariablesError,
    resolve_prompt,
)
from tradeloop.prompts.seeds import seed_prompt_templates
from tradeloop.prompts.service import SYSTEM, Actor, TemplateChanges, TemplateContent
from tradeloop.strategies import service as strategies
from tradeloop.strategies.demo import SMA_CROSS

SRC = str(Path(__file__).resolve().parents[2] / "src")


def user_with_strategy(session: Session, email: str = "alice@example.com") -> tuple[Any, Any]:
    user = accounts.create_user(session=session, email=email, password="correct horse battery")
    strategy = strategies.create_strategy(session=session, owner_id=user.id,
                                          definition=SMA_CROSS)
    return user, strategy


def strategy_template(session: Session, user: Any, strategy: Any,
                      text: str = "Mine: {{ symbol }}") -> Any:
    draft = service.TemplateDraft(
        name="Alice daily", strategy_id=strategy.id, is_default=True,
        content=TemplateContent(text, [{"name": "symbol", "type": "string"}]))
    return service.create_template(session=session, actor=Actor.of(user), draft=draft)


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[list]:
    """The log events of prompts.resolution (its module logger may be cached on first use
    with the app's processors, so a fresh one is put in place inside the capture)."""
    with structlog.testing.capture_logs() as logs:
        monkeypatch.setattr(resolution, "log", structlog.get_logger(resolution.__name__))
        yield logs


class TestOrder:
    def test_global_default_with_the_seed_log_line(self, db: Database,
                                                   captured: list) -> None:
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
            user, strategy = user_with_strategy(session)
            captured.clear()
            prompt = resolve_prompt(session=session, owner_id=user.id, strategy_id=strategy.id)
            logs = list(captured)
        assert prompt.name == "Daily Chart Technical Analysis"
        assert (prompt.source, prompt.version, prompt.template_type) == ("global", 1, "analysis")
        assert logs[0]["event"] == ("Loaded global default prompt: Daily Chart Technical "
                                    f"Analysis (ID: {prompt.template_id})")

    def test_strategy_default_wins(self, db: Database, captured: list) -> None:
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
            user, strategy = user_with_strategy(session)
            mine = strategy_template(session, user, strategy)
            captured.clear()
            prompt = resolve_prompt(session=session, owner_id=user.id, strategy_id=strategy.id)
            logs = list(captured)
            other = resolve_prompt(session=session, owner_id=user.id, strategy_id=None)
        assert (prompt.template_id, prompt.source) == (mine.id, "strategy")
        assert logs[0]["event"] == f"Loaded strategy-specific prompt: Alice daily (ID: {mine.id})"
        assert other.source == "global"

    def test_inactive_or_foreign_defaults_are_skipped(self, db: Database) -> None:
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
            alice, strategy = user_with_strategy(session)
            bob = accounts.create_user(session=session, email="bob@example.com",
                                       password="correct horse battery")
            mine = strategy_template(session, alice, strategy)
            # Bob naming Alice's strategy never gets Alice's template.
            assert resolve_prompt(session=session, owner_id=bob.id,
                                  strategy_id=strategy.id).source == "global"
            service.set_active(session=session, actor=Actor.of(alice), template_id=mine.id,
                               active=False)
            assert resolve_prompt(session=session, owner_id=alice.id,
                                  strategy_id=strategy.id).source == "global"

    def test_no_default_anywhere_is_a_clear_error(self, db: Database) -> None:
        with db.unit_of_work() as session:
            user, strategy = user_with_strategy(session)
            with pytest.raises(PromptNotConfiguredError) as caught:
                resolve_prompt(session=session, owner_id=user.id, strategy_id=strategy.id,
                               timeframe="weekly")
        assert "No active default 'analysis' prompt template for timeframe 'weekly'" in \
            caught.value.message
        assert "tradeloop seed" in caught.value.message

    def test_explicit_template_id(self, db: Database) -> None:
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
            alice, strategy = user_with_strategy(session)
            bob = accounts.create_user(session=session, email="bob@example.com",
                                       password="correct horse battery")
            mine = strategy_template(session, alice, strategy)
            prompt = resolve_prompt(session=session, owner_id=alice.id, template_id=mine.id)
            assert prompt.source == "explicit"
            with pytest.raises(Exception, match="not found"):
                resolve_prompt(session=session, owner_id=bob.id, template_id=mine.id)

    def test_production_label_is_served(self, db: Database) -> None:
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
            prompt = resolve_prompt(session=session, owner_id=None)
            service.update_template(session=session, actor=SYSTEM,
                                    template_id=prompt.template_id,
                                    changes=TemplateChanges(template_text="v2 {{ symbol }}"))
            assert resolve_prompt(session=session, owner_id=None).version == 2
            service.set_label(session=session, actor=SYSTEM, template_id=prompt.template_id,
                              label="production", version=1)
            assert resolve_prompt(session=session, owner_id=None).version == 1


class TestRender:
    def test_render_logs_the_seed_line_and_checks_variables(self, db: Database,
                                                            captured: list) -> None:
        with db.unit_of_work() as session:
            user, strategy = user_with_strategy(session)
            strategy_template(session, user, strategy)
            prompt = resolve_prompt(session=session, owner_id=user.id, strategy_id=strategy.id)
        captured.clear()
        assert prompt.render({"symbol": "AAPL"}) == "Mine: AAPL"
        logs = list(captured)
        assert logs[0]["event"] == "Rendered prompt (10 chars) from template: Alice daily"
        with pytest.raises(PromptVariablesError, match=r"'symbol' .* is missing"):
            prompt.render({})
        with pytest.raises(PromptVariablesError, match="should be string"):
            prompt.render({"symbol": 5})

    def test_render_failures_are_app_errors(self, db: Database) -> None:
        with db.unit_of_work() as session:
            user, strategy = user_with_strategy(session)
            strategy_template(session, user, strategy, text="{{ symbol * 3 }}")
            prompt = resolve_prompt(session=session, owner_id=user.id, strategy_id=strategy.id)
        with pytest.raises(PromptRenderFailedError) as caught:
            prompt.render({"symbol": "A"})
        assert caught.value.details["kind"] == "unsafe"


class TestCache:
    def test_cached_until_any_change(self, db: Database) -> None:
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
        template_cache.clear()
        with db.unit_of_work() as session:
            first = resolve_prompt(session=session, owner_id=None)
            misses = template_cache.misses
            again = resolve_prompt(session=session, owner_id=None)
            assert again is first and template_cache.misses == misses
        with db.unit_of_work() as session:  # an unrelated change still refreshes
            weekly = resolve_prompt(session=session, owner_id=None, timeframe="weekly")
            service.update_template(session=session, actor=SYSTEM,
                                    template_id=weekly.template_id,
                                    changes=TemplateChanges(description="changed"))
        with db.unit_of_work() as session:
            refreshed = resolve_prompt(session=session, owner_id=None)
        assert refreshed is not first and refreshed.version == first.version

    def test_a_rolled_back_edit_is_never_cached(self, db: Database) -> None:
        with db.unit_of_work() as session:
            seed_prompt_templates(session=session)
        template_cache.clear()
        with pytest.raises(RuntimeError), db.unit_of_work() as session:
            prompt = resolve_prompt(session=session, owner_id=None)
            service.update_template(session=session, actor=SYSTEM,
                                    template_id=prompt.template_id,
                                    changes=TemplateChanges(template_text="draft {{ symbol }}"))
            assert resolve_prompt(session=session, owner_id=None).version == 2
            raise RuntimeError("roll back")
        with db.unit_of_work() as session:
            assert resolve_prompt(session=session, owner_id=None).version == 1


# ------------------------------------------------------------------ two real processes

WORKER = """
import json, sys
from tradeloop.db import Database
from tradeloop.domains import load_models
from tradeloop.logs import configure_logging
from tradeloop.prompts import resolution, service
from tradeloop.prompts.cache import template_cache
from tradeloop.prompts.resolution import resolve_prompt

configure_logging("WARNING")  # log lines go to stderr; stdout carries the answers
load_models()
db = Database.from_url(sys.argv[1])
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    with db.unit_of_work() as session:
        prompt = resolve_prompt(session=session, owner_id=None)
        if command == "edit":
            service.update_template(session=session, actor=service.SYSTEM,
                                    template_id=prompt.template_id,
                                    changes=service.TemplateChanges(template_text=argument))
    print(json.dumps({"version": prompt.version, "text": prompt.text,
                      "misses": template_cache.misses, "hits": template_cache.hits}),
          flush=True)
"""


class Worker:
    def __init__(self, url: str):
        env = {**os.environ, "PYTHONPATH": SRC}
        self.process = subprocess.Popen([sys.executable, "-c", WORKER, url], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def ask(self, line: str) -> dict:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the worker process died"
        return json.loads(answer)

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(30)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A committed (not rolled-back) migrated database both processes open."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
    else:
        url = fresh_postgres_database("prompt_cache")
    migrate.upgrade(url)
    database = Database.from_url(url)
    with database.unit_of_work() as session:
        seed_prompt_templates(session=session)
    database.dispose()
    yield url


def test_an_edit_in_one_process_is_seen_by_the_other_on_its_next_resolution(
        shared_url: str) -> None:
    first, second = Worker(shared_url), Worker(shared_url)
    try:
        assert first.ask("resolve")["version"] == 1
        before = second.ask("resolve")
        warm = second.ask("resolve")
        assert before["version"] == warm["version"] == 1
        assert warm["misses"] == before["misses"]  # served from the cache
        assert warm["hits"] == before["hits"] + 1
        first.ask("edit Edited elsewhere {{ symbol }}")
        after = second.ask("resolve")
        assert after["version"] == 2
        assert after["text"] == "Edited elsewhere {{ symbol }}"
        assert after["misses"] == warm["misses"] + 1
    finally:
        first.close()
        second.close()
