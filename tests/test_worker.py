"""The in-process worker on every back-end: wake-ups, catch-up, shutdown, long handlers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

from durable_jobs import Continuous, ContinuousContext, Task, TaskContext, every
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.runtime.clock import FakeClock

pytestmark = pytest.mark.timeout(60)


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Runs:
    count: int = 0


async def schedule_now(event: Ping, ctx: TaskContext[Runs]) -> None:
    ctx.schedule(ctx.now)


def due_at_once(execute: Any) -> Task[Runs, Ping]:
    """A Task whose every event makes its execute due at once."""
    return Task(state=Runs, event=Ping, on_event=schedule_now, execute=execute)


def app_for(backend_url: Any, jobs: dict[str, Any], **options: Any) -> DurableJobs:
    url, storage_options = backend_url
    return DurableJobs(jobs, storage=url, storage_options=storage_options, **options)


async def test_an_alarm_set_in_process_wakes_the_worker_at_once(backend_url: Any) -> None:
    ran = asyncio.Event()

    async def execute(ctx: TaskContext[Runs]) -> None:
        ran.set()

    job = due_at_once(execute)
    app = app_for(backend_url, {"job": job})
    # A poll interval of a minute: only the wake-up can explain a prompt delivery.
    async with app.worker(poll_interval=60):
        await asyncio.sleep(0)
        await app.client.task(job).send("a", Ping())
        await asyncio.wait_for(ran.wait(), 10)
    await app.aclose()


async def test_missed_runs_after_downtime_coalesce_into_one(backend_url: Any) -> None:
    ran = asyncio.Event()

    async def tick(ctx: ContinuousContext[Runs]) -> None:
        ctx.set_state(Runs(ctx.state.count + 1))
        ran.set()

    job = Continuous(state=Runs, schedule=every("1 minute"), execute=tick, start_immediately=False)
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    app = app_for(backend_url, {"job": job}, clock=clock)
    await app.client.continuous(job).start("a", Runs())
    clock.set(clock.now() + 600)  # ten runs were missed while no worker ran
    async with app.worker(poll_interval=0.01):
        await asyncio.wait_for(ran.wait(), 10)
    status = await app.client.continuous(job).status("a")
    await app.aclose()
    assert status.run_count == 1
    assert status.next_run_at == datetime.fromtimestamp(clock.now() + 60, UTC)


async def test_shutdown_lets_running_handlers_finish_within_the_grace(backend_url: Any) -> None:
    entered, finish = asyncio.Event(), asyncio.Event()

    async def execute(ctx: TaskContext[Runs]) -> None:
        entered.set()
        await finish.wait()
        ctx.set_state(Runs(1))

    job = due_at_once(execute)
    app = app_for(backend_url, {"job": job})
    worker = app.worker(grace=30)
    await worker.start()
    await app.client.task(job).send("a", Ping())
    await asyncio.wait_for(entered.wait(), 10)
    stopping = asyncio.ensure_future(worker.stop())
    await asyncio.sleep(0)
    assert not stopping.done()  # it waits for the running handler
    finish.set()
    await asyncio.wait_for(stopping, 10)
    state = await app.client.task(job).get_state("a")
    await app.aclose()
    assert state.state == Runs(1)
    assert state.scheduled_at is None


async def test_a_handler_past_the_grace_is_cancelled_and_its_alarm_kept(backend_url: Any) -> None:
    entered = asyncio.Event()

    async def execute(ctx: TaskContext[Runs]) -> None:
        entered.set()
        await asyncio.Event().wait()  # never finishes

    job = due_at_once(execute)
    app = app_for(backend_url, {"job": job})
    worker = app.worker(grace=0.01)
    await worker.start()
    await app.client.task(job).send("a", Ping())
    await asyncio.wait_for(entered.wait(), 10)
    await worker.stop()
    status = await app.client.task(job).status("a")
    # The claim was released: another caller gets the instance at once.
    await asyncio.wait_for(app.client.task(job).send("a", Ping()), 5)
    await app.aclose()
    assert status.status == "active"


async def test_a_long_handler_keeps_its_claim_alive(backend_url: Any) -> None:
    entered, finish = asyncio.Event(), asyncio.Event()

    async def execute(ctx: TaskContext[Runs]) -> None:
        entered.set()
        await finish.wait()
        ctx.set_state(Runs(1))

    job = due_at_once(execute)
    app = app_for(backend_url, {"job": job}, lease=0.3)
    async with app.worker():
        await app.client.task(job).send("a", Ping())
        await asyncio.wait_for(entered.wait(), 10)
        await asyncio.sleep(1.0)  # let wall time pass: three leases, renewed meanwhile
        now = app.clock.now()
        rival = await app.storage.claim("task:job:a", "rival", now, now + 1)
        finish.set()
    state = await app.client.task(job).get_state("a")
    await app.aclose()
    assert rival is None
    assert state.state == Runs(1)
