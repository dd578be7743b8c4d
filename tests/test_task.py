"""Task jobs: event-driven state machines whose handlers decide when ``execute`` runs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import pytest

from durable_jobs import (
    ExecutionError,
    SendResult,
    Task,
    TaskContext,
    TaskState,
    TaskStatus,
    TerminateResult,
    TriggerResult,
    ValidationError,
)
from durable_jobs.testing import create_test_runtime
from tests.support import T0, later, of_type, types


@attrs.frozen
class Order:
    order_id: str
    status: str = "pending"
    reminders: int = 0


@attrs.frozen
class OrderPlaced:
    order_id: str


@attrs.frozen
class PaymentReceived:
    pass


@attrs.frozen
class Shipped:
    tracking_number: str


OrderEvent = OrderPlaced | PaymentReceived | Shipped


def snapshot(ctx: TaskContext[Order]) -> dict[str, Any]:
    return {
        "instance_id": ctx.instance_id,
        "job_name": ctx.job_name,
        "id": ctx.id,
        "now": ctx.now,
        "state": ctx.state,
        "scheduled_at": ctx.scheduled_at,
        "event_count": ctx.event_count,
        "execute_count": ctx.execute_count,
        "created_at": ctx.created_at,
    }


def order_processor() -> tuple[Task[Order, Any], list[tuple[str, Any]]]:
    calls: list[tuple[str, Any]] = []

    async def on_event(event: Any, ctx: TaskContext[Order]) -> None:
        calls.append(("on_event", {**snapshot(ctx), "is_first_event": ctx.is_first_event}))
        if isinstance(event, OrderPlaced):
            ctx.set_state(Order(event.order_id))
            ctx.schedule("5 minutes")
        elif isinstance(event, PaymentReceived):
            ctx.update_state(lambda s: attrs.evolve(s, status="paid"))
            ctx.cancel_schedule()
        else:
            ctx.update_state(lambda s: attrs.evolve(s, status="shipped"))
            ctx.terminate("delivered")

    def check_order(ctx: TaskContext[Order]) -> None:
        calls.append(("execute", snapshot(ctx)))
        assert ctx.state is not None
        if ctx.state.status == "pending" and ctx.state.reminders < 2:
            ctx.set_state(attrs.evolve(ctx.state, reminders=ctx.state.reminders + 1))
            ctx.schedule(timedelta(minutes=30))

    job = Task(state=Order, event=OrderEvent, on_event=on_event, execute=check_order)
    return job, calls


async def test_the_first_send_creates_the_instance_and_runs_on_event() -> None:
    job, calls = order_processor()
    rt = create_test_runtime({"order_processor": job}, now=T0)
    handle = rt.client.task(job)

    result = await handle.send("o1", OrderPlaced("o1"))
    assert result == SendResult(True, "task:order_processor:o1", later(minutes=5))
    assert calls == [
        (
            "on_event",
            {
                "instance_id": "task:order_processor:o1",
                "job_name": "order_processor",
                "id": "o1",
                "now": T0,
                "state": None,
                "scheduled_at": None,
                "event_count": 0,
                "execute_count": 0,
                "created_at": T0,
                "is_first_event": True,
            },
        )
    ]
    assert await handle.status("o1") == TaskStatus("active", later(minutes=5), 1)
    assert await handle.get_state("o1") == TaskState(Order("o1"), later(minutes=5))
    assert types(rt.events) == ["job.started", "task.scheduled"]


async def test_execute_runs_at_the_scheduled_time_and_may_schedule_itself_again() -> None:
    job, calls = order_processor()
    rt = create_test_runtime({"order_processor": job}, now=T0)
    await rt.client.task(job).send("o1", OrderPlaced("o1"))
    await rt.advance("2 hours")

    executes = [seen for kind, seen in calls if kind == "execute"]
    assert [e["now"] for e in executes] == [
        later(minutes=5),
        later(minutes=35),
        later(minutes=65),
    ]
    assert [e["execute_count"] for e in executes] == [0, 1, 2]  # executions before this one
    assert [e["state"].reminders for e in executes] == [0, 1, 2]
    # The alarm has fired by the time execute runs: it sees no schedule of its own.
    assert {e["scheduled_at"] for e in executes} == {None}
    assert await rt.client.task(job).status("o1") == TaskStatus("idle", None, 1)
    assert await rt.client.task(job).get_state("o1") == TaskState(Order("o1", reminders=2), None)


async def test_later_events_see_the_state_counters_and_schedule_so_far() -> None:
    job, calls = order_processor()
    rt = create_test_runtime({"order_processor": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("o1", OrderPlaced("o1"))
    await rt.advance("10 minutes")  # one execute at 00:05, the next due at 00:35

    result = await handle.send("o1", PaymentReceived())
    assert result == SendResult(False, "task:order_processor:o1", None)
    _, seen = calls[-1]
    assert seen["state"] == Order("o1", reminders=1)
    assert seen["is_first_event"] is False
    assert (seen["event_count"], seen["execute_count"]) == (1, 1)
    assert seen["scheduled_at"] == later(minutes=35)
    assert seen["created_at"] == T0
    assert await handle.status("o1") == TaskStatus("idle", None, 2)

    await rt.advance("1 hour")
    assert [kind for kind, _ in calls].count("execute") == 1  # cancel_schedule held


async def test_each_member_of_the_event_union_reaches_on_event_as_itself() -> None:
    received: list[object] = []
    job = Task(
        state=Order,
        event=OrderEvent,
        on_event=lambda event, ctx: received.append(event),
        execute=lambda ctx: None,
    )
    rt = create_test_runtime({"orders": job}, now=T0)
    for event in (OrderPlaced("o1"), PaymentReceived(), Shipped("T-1")):
        await rt.client.task(job).send("o1", event)
    assert received == [OrderPlaced("o1"), PaymentReceived(), Shipped("T-1")]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("90 seconds", later(seconds=90)),
        (timedelta(hours=2), later(hours=2)),
        (later(hours=3), later(hours=3)),
        # An aware datetime in another zone is the same instant.
        (datetime(2025, 12, 31, 20, 0, tzinfo=ZoneInfo("America/New_York")), later(hours=1)),
        (later(days=1).timestamp(), later(days=1)),
        (int(later(days=2).timestamp()), later(days=2)),
    ],
    ids=["string", "timedelta", "utc-datetime", "zoned-datetime", "epoch-float", "epoch-int"],
)
async def test_schedule_takes_a_duration_an_aware_datetime_or_epoch_seconds(
    when: object, expected: datetime
) -> None:
    ran: list[datetime] = []
    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: ctx.schedule(when),
        execute=lambda ctx: ran.append(ctx.now),
    )
    rt = create_test_runtime({"j": job}, now=T0)
    assert (await rt.client.task(job).send("a", OrderPlaced("a"))).scheduled_at == expected
    await rt.advance("3 days")
    assert ran == [expected]
    [scheduled] = of_type(rt.events, "task.scheduled")
    assert scheduled.scheduled_at == expected.isoformat()


@pytest.mark.parametrize(
    "when", [datetime(2026, 1, 2), 300, "soon"], ids=["naive-datetime", "small-number", "nonsense"]
)
async def test_schedule_refuses_what_is_not_a_time_and_nothing_is_written(when: object) -> None:
    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: ctx.schedule(when),
        execute=lambda ctx: None,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    with pytest.raises(ExecutionError) as caught:
        await rt.client.task(job).send("a", OrderPlaced("a"))
    assert isinstance(caught.value.__cause__, ValidationError)
    assert await rt.client.task(job).status("a") == TaskStatus("not_found")
    assert rt.events == []


async def test_a_schedule_in_the_past_runs_at_the_next_advance() -> None:
    ran: list[datetime] = []
    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: ctx.schedule(ctx.now - timedelta(minutes=1)),
        execute=lambda ctx: ran.append(ctx.now),
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.task(job).send("a", OrderPlaced("a"))
    await rt.advance(0)
    assert ran == [T0]


async def test_on_idle_runs_after_a_handler_leaves_no_schedule() -> None:
    idles: list[tuple[datetime, Any, Any]] = []

    def on_event(event: OrderPlaced, ctx: TaskContext[Order]) -> None:
        ctx.set_state(Order(event.order_id))
        if event.order_id == "scheduled":
            ctx.schedule("1 minute")

    def on_idle(ctx: TaskContext[Order]) -> None:
        idles.append((ctx.now, ctx.state, ctx.scheduled_at))
        ctx.update_state(lambda s: attrs.evolve(s, status="idle-noted"))

    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=on_event,
        execute=lambda ctx: None,
        on_idle=on_idle,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    handle = rt.client.task(job)

    await handle.send("a", OrderPlaced("scheduled"))
    assert idles == []  # a schedule is pending
    await rt.advance("1 minute")  # execute sets nothing: now it is idle
    assert idles == [(later(minutes=1), Order("scheduled"), None)]
    assert (await handle.get_state("a")).state == Order("scheduled", "idle-noted")

    await handle.send("b", OrderPlaced("plain"))
    assert idles[-1] == (later(minutes=1), Order("plain"), None)


async def test_on_idle_may_schedule_the_next_execute() -> None:
    ran: list[datetime] = []
    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: ctx.set_state(Order(event.order_id)),
        execute=lambda ctx: ran.append(ctx.now) if len(ran) < 1 else ctx.terminate("cleanup"),
        on_idle=lambda ctx: ctx.schedule("1 hour"),
    )
    rt = create_test_runtime({"j": job}, now=T0)
    assert (await rt.client.task(job).send("a", OrderPlaced("a"))).scheduled_at == later(hours=1)
    await rt.advance("3 hours")
    assert ran == [later(hours=1)]
    assert await rt.client.task(job).status("a") == TaskStatus("not_found")
    assert rt.events[-1].type == "job.terminated"
    assert rt.events[-1].reason == "cleanup"


async def test_on_error_handles_a_failed_on_event_and_only_its_own_writes_commit() -> None:
    errors: list[tuple[str, Any]] = []

    def on_event(event: OrderPlaced, ctx: TaskContext[Order]) -> None:
        ctx.set_state(Order("from on_event"))
        ctx.schedule("1 minute")
        raise LookupError(event.order_id)

    def on_error(error: Exception, ctx: TaskContext[Order]) -> None:
        errors.append((repr(error), ctx.state))
        ctx.set_state(Order("from on_error", status="failed"))
        ctx.schedule("1 hour")

    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=on_event,
        execute=lambda ctx: None,
        on_error=on_error,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    result = await rt.client.task(job).send("a", OrderPlaced("o9"))

    assert result == SendResult(True, "task:j:a", later(hours=1))
    assert errors == [("LookupError('o9')", None)]
    assert await rt.client.task(job).get_state("a") == TaskState(
        Order("from on_error", status="failed"), later(hours=1)
    )


async def test_without_on_error_a_failed_on_event_raises_execution_error_with_the_cause() -> None:
    def on_event(event: OrderPlaced, ctx: TaskContext[Order]) -> None:
        raise LookupError("no such order")

    job = Task(state=Order, event=OrderPlaced, on_event=on_event, execute=lambda ctx: None)
    rt = create_test_runtime({"j": job}, now=T0)
    with pytest.raises(ExecutionError, match="no such order") as caught:
        await rt.client.task(job).send("a", OrderPlaced("x"))
    assert isinstance(caught.value.__cause__, LookupError)


async def test_on_error_handles_a_failed_execute_and_the_instance_lives_on() -> None:
    seen: list[str] = []

    def execute(ctx: TaskContext[Order]) -> None:
        raise TimeoutError("carrier API")

    def on_error(error: Exception, ctx: TaskContext[Order]) -> None:
        seen.append(str(error))
        ctx.schedule("10 minutes")

    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: ctx.schedule("1 minute"),
        execute=execute,
        on_error=on_error,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.task(job).send("a", OrderPlaced("a"))
    await rt.advance("1 minute")
    assert seen == ["carrier API"]
    status = await rt.client.task(job).status("a")
    assert attrs.evolve(status, last_error=None) == TaskStatus("active", later(minutes=11), 1)
    assert status.last_error is not None
    assert (status.last_error.type, status.last_error.message, status.last_error.at) == (
        "TimeoutError",
        "carrier API",
        later(minutes=1),
    )
    [run] = await rt.client.history("task:j:a")
    assert (run.outcome, run.error) == ("failed", status.last_error)
    assert await rt.client.dead_letter("task:j:a") is None


async def test_a_failing_on_idle_fails_the_send_and_nothing_is_written() -> None:
    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: ctx.set_state(Order(event.order_id)),
        execute=lambda ctx: None,
        on_idle=lambda ctx: 1 / 0,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    with pytest.raises(ExecutionError, match="on_idle") as caught:
        await rt.client.task(job).send("a", OrderPlaced("a"))
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert await rt.client.task(job).status("a") == TaskStatus("not_found")
    assert rt.events == []


async def test_a_failing_on_idle_after_execute_is_a_failed_execution_not_a_stuck_alarm() -> None:
    executes: list[datetime] = []

    def on_idle(ctx: TaskContext[Order]) -> None:
        raise RuntimeError("idle hook broke")

    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: (ctx.set_state(Order("a")), ctx.schedule("1 minute")),
        execute=lambda ctx: (executes.append(ctx.now), ctx.set_state(Order("changed"))),
        on_idle=on_idle,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.task(job).send("a", OrderPlaced("a"))
    await rt.advance("1 hour")

    assert executes == [later(minutes=1)]  # not re-run on every delivery
    assert types(rt.events)[-2:] == ["job.failed", "job.retry_exhausted"]
    letter = await rt.client.dead_letter("task:j:a")
    assert letter is not None
    assert letter.state == Order("a")  # execute's write did not commit
    assert "idle hook broke" in letter.error


async def test_trigger_runs_execute_now() -> None:
    job, calls = order_processor()
    rt = create_test_runtime({"order_processor": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("o1", OrderPlaced("o1"))
    await rt.advance("1 minute")

    assert await handle.trigger("o1") == TriggerResult(True)
    assert calls[-1][0] == "execute"
    assert calls[-1][1]["now"] == later(minutes=1)
    # Decision of the code: execute replaces the pending schedule with its own.
    assert await handle.status("o1") == TaskStatus("active", later(minutes=31), 1)
    assert await handle.trigger("nobody") == TriggerResult(False)


async def test_status_and_state_of_an_unknown_instance() -> None:
    job, _ = order_processor()
    rt = create_test_runtime({"order_processor": job}, now=T0)
    assert await rt.client.task(job).status("nobody") == TaskStatus("not_found", None, None)
    assert await rt.client.task(job).get_state("nobody") == TaskState(None, None)


async def test_an_instance_whose_handler_set_no_state_exists_with_state_none() -> None:
    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: None,
        execute=lambda ctx: None,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    assert (await rt.client.task(job).send("a", OrderPlaced("a"))).created is True
    assert await rt.client.task(job).status("a") == TaskStatus("idle", None, 1)
    assert await rt.client.task(job).get_state("a") == TaskState(None, None)
    assert (await rt.client.task(job).send("a", OrderPlaced("a"))).created is False


async def test_ctx_terminate_deletes_the_instance_and_the_id_starts_fresh() -> None:
    job, calls = order_processor()
    rt = create_test_runtime({"order_processor": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("o1", OrderPlaced("o1"))
    await rt.advance("1 minute")

    assert await handle.send("o1", Shipped("T-1")) == SendResult(
        False, "task:order_processor:o1", None
    )
    assert await handle.status("o1") == TaskStatus("not_found")
    assert await handle.get_state("o1") == TaskState(None, None)
    assert of_type(rt.events, "job.terminated")[-1].reason == "delivered"
    await rt.advance("1 hour")
    assert [kind for kind, _ in calls].count("execute") == 0  # its alarm went too

    await rt.advance("1 minute")
    assert (await handle.send("o1", OrderPlaced("o1"))).created is True
    _, seen = calls[-1]
    assert (seen["state"], seen["is_first_event"], seen["event_count"]) == (None, True, 0)
    assert seen["created_at"] == later(minutes=62)


async def test_client_terminate_deletes_the_instance() -> None:
    job, _ = order_processor()
    rt = create_test_runtime({"order_processor": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("o1", OrderPlaced("o1"))
    assert await handle.terminate("o1", "cancelled") == TerminateResult(True, "cancelled")
    assert await handle.status("o1") == TaskStatus("not_found")
    assert await handle.terminate("o1") == TerminateResult(False, None)
    await rt.advance("1 hour")
    assert "job.executed" not in types(rt.events)


async def test_trigger_consumes_the_pending_schedule_unless_execute_sets_another() -> None:
    # Decision of the code: a triggered execute is the scheduled one, run early.
    ran: list[datetime] = []
    job = Task(
        state=Order,
        event=OrderPlaced,
        on_event=lambda event, ctx: ctx.schedule("1 hour"),
        execute=lambda ctx: ran.append(ctx.now),
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.task(job).send("a", OrderPlaced("a"))
    await rt.client.task(job).trigger("a")
    assert await rt.client.task(job).status("a") == TaskStatus("idle", None, 1)
    await rt.advance("2 hours")
    assert ran == [T0]
