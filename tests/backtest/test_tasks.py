"""A sweep fans out as tasks to a real Celery worker on the local Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import api_headers, make_settings, require_service, store_bars
from tradeloop import domains, migrate
from tradeloop.accounts.service import first_admin
from tradeloop.backtest import sweeps
from tradeloop.backtest.service import RunRequest
from tradeloop.celery_app import make_celery_app
from tradeloop.db import Database
from tradeloop.strategies import service as strategies
from tradeloop.strategies.demo import SMA_CROSS
from tradeloop.tasks import CeleryTaskRunner, load_task_modules, set_task_runner

load_task_modules(domains.TASK_MODULES)


@pytest.mark.celery
def test_sweep_runs_on_a_real_celery_worker(tmp_path: Path) -> None:
    redis_url = require_service("TEST_REDIS_URL", "Celery")
    database_url = f"sqlite:///{tmp_path / 'sweep.db'}"
    migrate.upgrade(database_url)
    db = Database.from_url(database_url)
    api_headers(db, "owner@example.com", admin=True)
    store_bars(db, "AAA", 500)
    with db.unit_of_work() as session:
        owner = first_admin(session=session)
        assert owner is not None
        owner_id = owner.id
        strategies.create_strategy(session=session, owner_id=owner_id, definition=SMA_CROSS
                                   .replace("[ACME, GLOBX, INITECH, UMBRL, BTCUSD]", "[AAA]"))

    queue = f"tradeloop-test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url,
           "DATABASE_URL": database_url, "TRADELOOP_DATA_DIR": str(tmp_path / "data"),
           "CELERY_QUEUE": queue}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tradeloop.cli", "worker", "--pool", "threads",
         "--concurrency", "2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    settings = make_settings(tmp_path / "producer", celery_broker_url=redis_url,
                             celery_result_backend=redis_url, celery_queue=queue,
                             database_url=database_url)
    set_task_runner(CeleryTaskRunner(make_celery_app(settings)))
    try:
        with db.unit_of_work() as session:
            sweep, cached = sweeps.create_sweep(
                session=session, owner_id=owner_id, base=RunRequest(strategy="sma_cross"),
                grid={"fast": "5:20:5", "slow": [30, 60]}, metric="sharpe_ratio",
                max_running=2, workers=2)
            sweep_id = sweep.id
        assert cached == 0
        deadline = time.monotonic() + 90
        report: dict = {}
        while time.monotonic() < deadline:
            with db.unit_of_work() as session:
                report = sweeps.sweep_report(session=session, owner_id=owner_id,
                                             sweep_id=sweep_id)
            if report["finished"]:
                break
            time.sleep(0.3)
        assert report["finished"], report
        assert report["status"] == {"done": 8}
        assert len(report["ranking"]) == 8
    finally:
        set_task_runner(None)
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
        db.dispose()
    assert "process_backtest_queue" in output
