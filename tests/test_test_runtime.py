"""``create_test_runtime`` (API.md section 3): memory storage on a fake clock that moves
only through ``advance``, which delivers every alarm due by then in time order — those
set by handlers during the advance too — with the clock reading each alarm's due time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from durable_jobs import Continuous, ContinuousContext, Task, TaskContext, every
from durable_jobs.testing import TestRuntime, create_test_runtime
from tests.support import T0, later, types


@attrs.frozen
class Note:
    text: str = ""


@attrs.frozen
class At:
    minutes: float


def scheduler(log: list[tuple[str, datetime]]) -> Task[Note, At]:
    def on_event(event: At, ctx: TaskContext[Note]) -> None:
        ctx.schedule(timedelta(minutes=event.minutes))

    def execute(ctx: TaskContext[Note]) -> None:
        log.append((ctx.id, ctx.now))

    return Task(state=Note, event=At, on_event=on_event, execute=execute)


async def test_nothing_runs_until_the_clock_is_advanced() -> None:
    log: list[tuple[str, datetime]] = []
    job = scheduler(log)
    rt = create_test_runtime({"s": job}, now=T0)
    await rt.client.task(job).send("a", At(0))
    assert log == []
    assert rt.now == T0
    assert await rt.advance(0) == 1
    assert log == [("a", T0)]


async def test_advance_delivers_alarms_of_all_instances_in_time_order() -> None:
    log: list[tuple[str, datetime]] = []
    job = scheduler(log)
    rt = create_test_runtime({"s": job}, now=T0)
    for key, minutes in (("c", 30), ("a", 10), ("b", 20), ("late", 90)):
        await rt.client.task(job).send(key, At(minutes))

    assert await rt.advance("1 hour") == 3
    assert log == [("a", later(minutes=10)), ("b", later(minutes=20)), ("c", later(minutes=30))]
    assert rt.now == later(hours=1)
    await rt.advance("30 minutes")
    assert log[-1] == ("late", later(minutes=90))


async def test_alarms_set_by_handlers_during_the_advance_are_delivered_too() -> None:
    seen: list[datetime] = []

    def execute(ctx: TaskContext[Note]) -> None:
        seen.append(ctx.now)
        ctx.schedule("7 minutes")

    job = Task(
        state=Note, event=At, on_event=lambda e, ctx: ctx.schedule("7 minutes"), execute=execute
    )
    rt = create_test_runtime({"s": job}, now=T0)
    await rt.client.task(job).send("a", At(0))
    assert await rt.advance("30 minutes") == 4
    assert seen == [later(minutes=m) for m in (7, 14, 21, 28)]
    assert (await rt.client.task(job).status("a")).scheduled_at == later(minutes=35)


async def test_the_clock_reads_each_alarms_due_time_while_it_runs() -> None:
    clock_reads: list[tuple[datetime, datetime]] = []

    def tick(ctx: ContinuousContext[Note]) -> None:
        clock_reads.append((ctx.now, rt.now))

    job = Continuous(state=Note, schedule=every("25 minutes"), execute=tick)
    rt = create_test_runtime({"t": job}, now=T0)
    await rt.client.continuous(job).start("a", Note())
    await rt.advance("1 hour")
    assert clock_reads == [(later(minutes=m), later(minutes=m)) for m in (0, 25, 50)]
    assert rt.now == later(hours=1)


async def test_an_alarm_due_exactly_at_the_target_is_delivered() -> None:
    log: list[tuple[str, datetime]] = []
    job = scheduler(log)
    rt = create_test_runtime({"s": job}, now=T0)
    await rt.client.task(job).send("a", At(5))
    await rt.advance(timedelta(minutes=4, seconds=59))
    assert log == []
    await rt.advance("1 second")
    assert log == [("a", later(minutes=5))]


async def test_events_are_recorded_in_order_and_times_are_aware_utc() -> None:
    log: list[tuple[str, datetime]] = []
    job = scheduler(log)
    rt = create_test_runtime({"s": job}, now=datetime(2026, 6, 1, 12, tzinfo=UTC))
    await rt.client.task(job).send("a", At(1))
    await rt.advance("1 minute")
    assert types(rt.events) == ["job.started", "task.scheduled", "job.executed"]
    assert [e.at for e in rt.events] == [
        datetime(2026, 6, 1, 12, tzinfo=UTC),
        datetime(2026, 6, 1, 12, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 1, tzinfo=UTC),
    ]
    assert rt.now.utcoffset() == timedelta(0)


def test_the_fake_clock_needs_an_aware_start() -> None:
    with pytest.raises(ValueError, match="aware"):
        create_test_runtime({}, now=datetime(2026, 1, 1))


async def test_advance_refuses_a_negative_duration() -> None:
    rt = create_test_runtime({}, now=T0)
    with pytest.raises(ValueError, match="-5"):
        await rt.advance(-5)
    assert rt.now == T0


async def test_the_same_fake_clock_drives_real_storage(tmp_path: Path) -> None:
    ticks: list[datetime] = []

    def tick(ctx: ContinuousContext[Note]) -> None:
        ticks.append(ctx.now)
        ctx.set_state(Note(f"{ctx.state.text}+"))

    job = Continuous(state=Note, schedule=every("10 minutes"), execute=tick)
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    rt = create_test_runtime({"t": job}, now=T0, storage=url)
    await rt.client.continuous(job).start("a", Note())
    await rt.advance("20 minutes")
    assert ticks == [T0, later(minutes=10), later(minutes=20)]
    await rt.aclose()

    reopened = create_test_runtime({"t": job}, now=later(minutes=20), storage=url)
    assert await reopened.client.continuous(job).get_state("a") == Note("+++")
    await reopened.advance("10 minutes")
    assert ticks[-1] == later(minutes=30)
    await reopened.aclose()


async def test_a_handler_may_call_another_instance_whose_alarm_is_due_too() -> None:
    """advance() must not hold claims ahead of delivery: a handler that sends to an
    instance due at the same moment would wait on its own runtime's claim."""

    @attrs.frozen
    class Nudge:
        pass

    @attrs.frozen
    class Seen:
        nudges: int = 0

    runtimes: list[TestRuntime] = []

    async def on_nudge(event: Nudge, ctx: TaskContext[Seen]) -> None:
        ctx.set_state(Seen((ctx.state or Seen()).nudges + 1))
        if ctx.id in ("a", "b") and ctx.state.nudges == 1:
            ctx.schedule(ctx.now)

    async def execute(ctx: TaskContext[Seen]) -> None:
        if ctx.id == "a":
            await runtimes[0].client.task(job).send("b", Nudge())

    job = Task(state=Seen, event=Nudge, on_event=on_nudge, execute=execute)
    rt = create_test_runtime({"job": job})
    runtimes.append(rt)
    await rt.client.task(job).send("a", Nudge())
    await rt.client.task(job).send("b", Nudge())
    await asyncio.wait_for(rt.advance(0), 10)
    state = await rt.client.task(job).get_state("b")
    assert state.state == Seen(2)


async def test_a_handler_that_reschedules_with_no_delay_is_stopped_naming_the_instance() -> None:
    async def again(ctx: TaskContext[Any]) -> None:
        ctx.schedule(ctx.now)

    async def start(event: Any, ctx: TaskContext[Any]) -> None:
        ctx.schedule(ctx.now)

    @attrs.frozen
    class Go:
        pass

    job = Task(state=Go, event=Go, on_event=start, execute=again)
    rt = create_test_runtime({"job": job}, now=T0)
    await rt.client.task(job).send("loop", Go())
    with pytest.raises(RuntimeError, match="task:job:loop was delivered 10000 times at"):
        await rt.advance("1 second")


async def test_many_instances_due_at_one_time_are_all_delivered() -> None:
    """The loop guard counts one instance's deliveries, not everyone's at that time."""

    @attrs.frozen
    class Go:
        pass

    async def start(event: Any, ctx: TaskContext[Any]) -> None:
        ctx.schedule("1 minute")

    async def done(ctx: TaskContext[Any]) -> None:
        return None

    job = Task(state=Go, event=Go, on_event=start, execute=done)
    rt = create_test_runtime({"job": job}, now=T0)
    for n in range(10_050):
        await rt.client.task(job).send(f"i{n}", Go())
    assert await rt.advance("1 minute") == 10_050
