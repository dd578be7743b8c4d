"""No thundering catch-up (SEMANTICS 4): a Continuous instance whose runs were missed
while no worker ran executes once, then returns to its schedule — the next ``every``
tick after now, the next cron time after now. Overdue alarms of the other kinds also
fire once."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from durable_jobs import (
    Continuous,
    ContinuousContext,
    ContinuousStatus,
    Debounce,
    Task,
    cron,
    every,
)
from durable_jobs.jobs import Duration, parse_duration
from durable_jobs.testing import TestRuntime, create_test_runtime
from tests.support import T0, later, of_type


@attrs.frozen
class Runs:
    count: int = 0


@attrs.frozen
class Ping:
    pass


def downtime(rt: TestRuntime, duration: Duration) -> None:
    """Move the fake clock without delivering anything: as if no worker ran."""
    clock = rt.app.clock
    clock.set(clock.now() + parse_duration(duration).total_seconds())


def counting(schedule: object) -> tuple[Continuous[Runs], list[datetime]]:
    runs: list[datetime] = []

    def tick(ctx: ContinuousContext[Runs]) -> None:
        runs.append(ctx.now)
        ctx.set_state(Runs(ctx.state.count + 1))

    job = Continuous(state=Runs, schedule=schedule, execute=tick, start_immediately=False)
    return job, runs


async def test_missed_every_runs_coalesce_into_one_then_the_schedule_resumes_on_its_grid() -> None:
    job, runs = counting(every("30 minutes"))
    rt = create_test_runtime({"tick": job}, now=T0)
    await rt.client.continuous(job).start("a", Runs())
    downtime(rt, timedelta(hours=5, minutes=7))

    await rt.advance(0)  # a worker is back
    assert runs == [later(hours=5, minutes=7)]  # once, not ten times
    # every() runs at a fixed rate: the next tick of the grid from 00:30, not now + 30m.
    assert await rt.client.continuous(job).status("a") == ContinuousStatus(
        "running", 1, later(hours=5, minutes=30)
    )
    assert await rt.client.continuous(job).get_state("a") == Runs(1)

    await rt.advance("1 hour")
    assert runs[1:] == [later(hours=5, minutes=30), later(hours=6)]


async def test_missed_cron_runs_coalesce_into_one_then_the_next_cron_time() -> None:
    job, runs = counting(cron("0 * * * *"))
    rt = create_test_runtime({"hourly": job}, now=T0)
    await rt.client.continuous(job).start("a", Runs())
    downtime(rt, timedelta(hours=4, minutes=30))

    await rt.advance(0)
    assert runs == [later(hours=4, minutes=30)]
    status = await rt.client.continuous(job).status("a")
    assert status.next_run_at == later(hours=5)
    await rt.advance("2 hours")
    assert runs[1:] == [later(hours=5), later(hours=6)]
    assert len(of_type(rt.events, "job.executed")) == 3


async def test_many_instances_each_catch_up_once() -> None:
    job, runs = counting(every("1 minute"))
    rt = create_test_runtime({"tick": job}, now=T0)
    for n in range(20):
        await rt.client.continuous(job).start(f"i{n}", Runs())
    downtime(rt, "1 hour")
    assert await rt.advance(0) == 20
    assert len(runs) == 20
    assert set(runs) == {later(hours=1)}


async def test_an_overdue_task_alarm_fires_once_at_the_late_time() -> None:
    ran: list[datetime] = []
    job = Task(
        state=Runs,
        event=Ping,
        on_event=lambda event, ctx: ctx.schedule("1 minute"),
        execute=lambda ctx: ran.append(ctx.now),
    )
    rt = create_test_runtime({"t": job}, now=T0)
    await rt.client.task(job).send("a", Ping())
    downtime(rt, "1 day")
    await rt.advance("1 day")
    assert ran == [later(days=1)]


async def test_an_overdue_debounce_flush_happens_once_with_the_whole_batch() -> None:
    flushed: list[tuple[datetime, int]] = []
    job = Debounce(
        event=Ping,
        flush_after="5 seconds",
        execute=lambda ctx: flushed.append((ctx.now, ctx.event_count)),
    )
    rt = create_test_runtime({"d": job}, now=T0)
    await rt.client.debounce(job).add("a", Ping())
    await rt.client.debounce(job).add("a", Ping())
    downtime(rt, "1 hour")
    await rt.advance("1 hour")
    assert flushed == [(later(hours=1), 2)]
