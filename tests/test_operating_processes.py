"""Operating across real processes sharing a store (SQLite and PostgreSQL): events
committed by one process reach a subscriber in another in commit order, a killed
worker leaves the registry after three leases, a redrive races to run once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from durable_jobs.adapters.records import Commit, DeadLetterRecord
from durable_jobs.runtime.app import DurableJobs
from tests.processes import (
    ROOT,
    Shared,
    acknowledged,
    observer,
    spawned,
    start_producer,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def watcher(shared: Shared, **options: Any) -> DurableJobs:
    return observer(shared.url, **({"schema": shared.schema} if shared.schema else {}), **options)


def test_a_subscriber_gets_another_process_s_events_in_commit_order(
    shared: Shared, tmp_path: Path
) -> None:
    app = watcher(shared)

    async def watch() -> list[tuple[str, str]]:
        async with app.events.subscribe(job="counter") as events:
            producer = start_producer(shared.env(tmp_path), 20, "a", "b", "c")
            assert await asyncio.to_thread(acknowledged, producer) == 60
            got = [await asyncio.wait_for(events.__anext__(), 10) for _ in range(9)]
        ids = [e.id for e in got]
        assert ids == sorted(ids)
        assert len(set(ids)) == 9
        return [(e.type, e.instance_id.rsplit(":", 1)[1]) for e in got]

    # The producer sends to a, b, c in turn, scheduling on the 1st and 11th round.
    assert asyncio.run(watch()) == [
        ("job.started", "a"),
        ("task.scheduled", "a"),
        ("job.started", "b"),
        ("task.scheduled", "b"),
        ("job.started", "c"),
        ("task.scheduled", "c"),
        ("task.scheduled", "a"),
        ("task.scheduled", "b"),
        ("task.scheduled", "c"),
    ]


def test_a_worker_killed_with_kill_9_leaves_the_registry_after_three_leases(
    shared: Shared, tmp_path: Path
) -> None:
    lease = 0.5
    app = watcher(shared, lease=lease)
    worker = start_worker(shared.env(tmp_path, lease=lease), tmp_path / "worker.log")
    wait_until(lambda: len(app.sync_client.workers()) == 1, "the worker to register")
    [info] = app.sync_client.workers()
    assert (info.pid, info.jobs) == (worker.pid, ("blocking", "counter"))
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert len(app.sync_client.workers()) == 1  # seen within the last lease/3
    wait_until(lambda: app.sync_client.workers() == [], "the dead worker to age out", 10)
    stopped = start_worker(shared.env(tmp_path, lease=lease), tmp_path / "worker2.log")
    wait_until(lambda: len(app.sync_client.workers()) == 1, "the second worker to register")
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(30) == 0
    assert app.sync_client.workers() == []  # a clean stop deregisters at once


def test_a_redrive_runs_exactly_once_with_two_processes_racing(
    shared: Shared, tmp_path: Path
) -> None:
    app = watcher(shared)
    instance_id = "task:counter:dead"

    async def bury() -> None:
        runtime = await app.runtime()
        now = runtime.clock.now()
        claim = await runtime.storage.claim(instance_id, "test", now, now + 30)
        assert claim is not None
        dead = DeadLetterRecord(
            instance_id=instance_id,
            job_name="counter",
            kind="task",
            state='{"events":3,"executed":0}',
            meta='{"event_count":3,"execute_count":0,"attempt":3}',
            error="RuntimeError: down",
            traceback="",
            attempts=3,
            at=now,
        )
        assert await runtime.storage.commit(Commit(claim=claim, dead_letter=dead))
        await app.aclose()

    asyncio.run(bury())
    go = tmp_path / "go"
    racers = []
    for _ in range(2):
        racer = subprocess.Popen(
            [sys.executable, "-m", "tests.apps.redrive", instance_id, str(go)],
            cwd=ROOT, env=shared.env(tmp_path), stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        spawned.append(racer)
        racers.append(racer)
    wait_until(lambda: len(list(tmp_path.glob("ready.*"))) == 2, "both racers to be ready")
    go.touch()
    answers = sorted(racer.communicate(timeout=60)[0].strip() for racer in racers)
    assert answers == ["False", "True"]
    client = app.sync_client
    state = client.task("counter").get_state("dead").state
    assert (state.events, state.executed) == (3, 1)
    assert client.dead_letter(instance_id) is None
    assert [r.trigger for r in client.history(instance_id)] == ["redrive"]
    assert not (tmp_path / "violation").exists()


def test_a_started_worker_s_jobs_are_not_overdue_and_a_stopped_one_s_are(
    shared: Shared, tmp_path: Path
) -> None:
    app = watcher(shared, lease=0.5)
    client = app.sync_client.task("counter")
    worker = start_worker(shared.env(tmp_path, lease=0.5), tmp_path / "worker.log")
    wait_until(lambda: len(app.sync_client.workers()) == 1, "the worker to register")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    client.send("late", _bump(schedule=True))  # due now, and no worker serves it
    wait_until(lambda: client.status("late").overdue, "the alarm to be overdue", 10)
    [info] = app.sync_client.instances(job="counter").items
    assert info.overdue


def _bump(**fields: Any) -> Any:
    from tests.apps.counter import Bump

    return Bump(**fields)
