"""Soak: workers killed with SIGKILL at random moments under load, a hundred times."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from tests.apps.counter import counter
from tests.processes import (
    acknowledged,
    app_env,
    observer,
    start_producer,
    start_worker,
    wait_until,
)

CYCLES = 100
IDS = [f"k{n}" for n in range(5)]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_killing_workers_at_random_loses_and_repeats_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = app_env(url, tmp_path, lease=0.5)
    rng = random.Random(20261121)
    producers = [start_producer(env, 400, *IDS) for _ in range(2)]

    for cycle in range(CYCLES):
        worker = start_worker(env, tmp_path / f"worker-{cycle}.log", concurrency=4)
        # The moment of the kill is the point of the test: anywhere from start-up
        # to the middle of a handler or a commit.
        time.sleep(rng.uniform(0.05, 0.6))
        worker.kill()
        worker.wait()

    total = sum(acknowledged(p) for p in producers)
    client = observer(url).sync_client.task(counter)
    final = start_worker(env, tmp_path / "final.log")
    try:
        wait_until(
            lambda: all(client.status(k).status == "idle" for k in IDS),
            "the last worker to deliver every alarm",
            timeout=120,
        )
    finally:
        final.terminate()
        final.wait(timeout=30)

    states = [client.get_state(k).state for k in IDS]
    assert total == 2 * 400 * len(IDS)
    assert sum(s.events for s in states if s is not None) == total
    check = sqlite3.connect(tmp_path / "jobs.db").execute("PRAGMA integrity_check").fetchone()
    assert check == ("ok",)
