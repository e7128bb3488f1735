"""The real server under hostile templates (issue 13, item 3).

`tradeloop serve` runs as a subprocess on a temporary SQLite data dir, used by a normal user.
Every template of the corpus answers 4xx within a second through HTTP — sent as text to
`/render`, and, when it validates, saved and rendered by id — and the server's peak resident
memory (VmHWM, reset before each template through /proc/<pid>/clear_refs) stays within
100 MB of its resident memory before the template.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_PASSWORD
from tests.prompts import hostile
from tests.signals.test_crash_recovery import Server, free_port
from tradeloop.strategies.demo import SMA_CROSS

MAX_GROWTH_MB = 100
MAX_ANSWER_S = 1.0
EMAIL = "sandbox@example.com"


def memory_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/<pid>/status (VmRSS, VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux ≥ 4.0)


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = call()
    return response, time.perf_counter() - started


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, httpx.Client, str]]:
    """The server's pid, a client authenticated as a normal user, and one of their strategies."""
    server = Server(tmp_path_factory.mktemp("sandbox") / "data", None, free_port())
    try:
        server.start(slow=False)
        subprocess.run([sys.executable, "-m", "tradeloop.cli", "user", "create", "--email",
                        EMAIL, "--password", TEST_PASSWORD], env=server.env, check=True,
                       capture_output=True, timeout=120)
        token = httpx.post(f"{server.url}/api/v1/auth/token",
                           json={"email": EMAIL, "password": TEST_PASSWORD}, timeout=30)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            strategy = client.post("/api/v1/strategies", json={"definition": SMA_CROSS})
            assert strategy.status_code == 201, strategy.text
            warm = client.post("/api/v1/prompts/render", json={"template_text": "{{ 1 ~ 2 }}"})
            assert warm.json()["rendered"] == "12"
            assert server.process is not None
            yield server.process.pid, client, strategy.json()["id"]
    finally:
        server.stop()


@pytest.mark.parametrize("name", sorted(hostile.ALL))
def test_answers_4xx_within_a_second_without_growing_the_server(
        served: tuple[int, httpx.Client, str], name: str,
        record_property: Callable[[str, Any], None]) -> None:
    pid, client, strategy_id = served
    text = hostile.ALL[name]
    reset_peak(pid)
    before = memory_mb(pid, "VmRSS")
    answers = [timed(lambda: client.post("/api/v1/prompts/render", json={
        "template_text": text, "variables": hostile.VARIABLES}))]
    validated, validate_s = timed(lambda: client.post("/api/v1/prompts/validate", json={
        "template_text": text, "variables": ["x"]}))
    assert validated.status_code == 200 and validate_s < MAX_ANSWER_S, validated.text
    if validated.json()["valid"]:
        created = client.post("/api/v1/prompts/", json={
            "name": name, "template_text": text, "variables": ["x"],
            "strategy_id": strategy_id})
        assert created.status_code == 201, created.text
        answers.append(timed(lambda: client.post("/api/v1/prompts/render", json={
            "template_id": created.json()["id"], "variables": hostile.VARIABLES})))
    growth = memory_mb(pid, "VmHWM") - before
    record_property("peak_rss_growth_mb", round(growth, 1))
    for response, elapsed in answers:
        assert 400 <= response.status_code < 500, response.text
        assert elapsed < MAX_ANSWER_S, f"{elapsed:.2f} s"
    assert growth < MAX_GROWTH_MB, f"peak RSS grew {growth:.0f} MB"
