"""Atomic commit (SEMANTICS 2): everything one handler call changes — state, counters,
alarm, telemetry — commits together or not at all. A handler that raises commits none
of its writes; only the failure bookkeeping (attempt, retry alarm, failure event) and
the failure itself (``last_error`` and a history row, SEMANTICS 15)."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    ContinuousStatus,
    Debounce,
    DebounceEventContext,
    DebounceExecuteContext,
    DebounceStatus,
    ErrorInfo,
    ExecutionError,
    Retry,
    Task,
    TaskContext,
    TaskState,
    TaskStatus,
    every,
)
from durable_jobs.adapters.records import InstanceRecord
from durable_jobs.testing import TestRuntime, create_test_runtime
from tests.support import T0, later, types


@attrs.frozen
class Account:
    balance: int = 0
    history: tuple[str, ...] = ()


@attrs.frozen
class Deposit:
    amount: int


RETRY = Retry(max_attempts=3, delay=Backoff.fixed("10 seconds"))


async def stored(rt: TestRuntime, instance_id: str) -> InstanceRecord:
    record = await rt.app.storage.read(instance_id)
    assert record is not None
    return record


def written(before: InstanceRecord, after: InstanceRecord) -> dict[str, Any]:
    """What a commit changed in a stored row: its columns, and its counters one by one
    (``updated_at`` aside, which every commit moves)."""
    changes = {
        name: getattr(after, name)
        for name in ("state", "alarm_at", "created_at")
        if getattr(after, name) != getattr(before, name)
    }
    old, new = json.loads(before.meta), json.loads(after.meta)
    changes.update({k: new.get(k) for k in old.keys() | new.keys() if old.get(k) != new.get(k)})
    return changes


async def assert_failure_kept(
    rt: TestRuntime, instance_id: str, error: ErrorInfo | None, trigger: str, outcome: str
) -> None:
    """The failure is the instance's ``last_error`` and its one history row."""
    assert error is not None
    [row] = await rt.client.history(instance_id)
    assert (row.trigger, row.outcome, row.attempt, row.error) == (
        trigger,
        outcome,
        error.attempt,
        error,
    )


async def test_a_failing_continuous_run_writes_only_the_attempt_and_retry_alarm() -> None:
    def execute(ctx: ContinuousContext[Account]) -> None:
        ctx.set_state(Account(999, ("half-done",)))
        raise RuntimeError("crashed after set_state")

    job = Continuous(state=Account, schedule=every("1 hour"), execute=execute, retry=RETRY)
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.continuous(job).start("a", Account(10))
    before = await stored(rt, "continuous:j:a")
    await rt.advance(0)

    assert await rt.client.continuous(job).get_state("a") == Account(10)
    # run_count unchanged; the alarm is the retry's, not the schedule's.
    status = await rt.client.continuous(job).status("a")
    assert attrs.evolve(status, last_error=None) == ContinuousStatus(
        "running", 0, later(seconds=10)
    )
    error = status.last_error
    assert error is not None
    assert (error.type, error.message, error.at, error.attempt) == (
        "RuntimeError",
        "crashed after set_state",
        T0,
        1,
    )
    assert "in execute" in error.traceback  # the handler's own frame
    assert written(before, await stored(rt, "continuous:j:a")) == {
        "alarm_at": later(seconds=10).timestamp(),
        "attempt": 2,
        "last_error": attrs.asdict(error) | {"at": T0.timestamp()},
    }
    await assert_failure_kept(rt, "continuous:j:a", error, "alarm", "retrying")
    assert types(rt.events) == ["job.started", "job.failed"]


async def test_a_failing_on_event_commits_nothing_not_even_the_new_instance() -> None:
    def on_event(event: Deposit, ctx: TaskContext[Account]) -> None:
        ctx.set_state(Account(event.amount))
        ctx.schedule("1 minute")
        raise ValueError("rejected")

    job = Task(state=Account, event=Deposit, on_event=on_event, execute=lambda ctx: None)
    rt = create_test_runtime({"j": job}, now=T0)
    with pytest.raises(ExecutionError):
        await rt.client.task(job).send("a", Deposit(5))
    assert await rt.client.task(job).status("a") == TaskStatus("not_found")
    assert rt.events == []  # not even job.started
    await rt.advance("1 hour")
    assert rt.events == []  # and no alarm


async def test_a_failing_on_event_leaves_an_existing_instance_exactly_as_it_was() -> None:
    def on_event(event: Deposit, ctx: TaskContext[Account]) -> None:
        current = ctx.state or Account()
        ctx.set_state(Account(current.balance + event.amount))
        if event.amount < 0:
            ctx.cancel_schedule()
            raise ValueError("overdraft")
        ctx.schedule("1 hour")

    job = Task(state=Account, event=Deposit, on_event=on_event, execute=lambda ctx: None)
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.task(job).send("a", Deposit(5))
    before_events = list(rt.events)
    before = await stored(rt, "task:j:a")

    with pytest.raises(ExecutionError, match="overdraft"):
        await rt.client.task(job).send("a", Deposit(-50), idempotency_key="k")
    assert await rt.client.task(job).get_state("a") == TaskState(Account(5), later(hours=1))
    status = await rt.client.task(job).status("a")
    assert attrs.evolve(status, last_error=None) == TaskStatus("active", later(hours=1), 1)
    assert status.last_error is not None
    assert (status.last_error.type, status.last_error.message) == ("ValueError", "overdraft")
    # Of the call, only its failure is kept: no state, schedule or event count.
    assert list(written(before, await stored(rt, "task:j:a"))) == ["last_error"]
    await assert_failure_kept(rt, "task:j:a", status.last_error, "send", "failed")
    assert types(rt.events[len(before_events) :]) == ["job.failed"]
    assert rt.events[: len(before_events)] == before_events
    # The failed event's idempotency key is not spent: the event may be sent again.
    await rt.client.task(job).send("a", Deposit(1), idempotency_key="k")
    assert await rt.client.task(job).get_state("a") == TaskState(Account(6), later(hours=1))


async def test_a_failing_task_execute_writes_only_the_retry_not_its_own_schedule() -> None:
    def execute(ctx: TaskContext[Account]) -> None:
        ctx.set_state(Account(-1))
        ctx.schedule("1 day")
        raise RuntimeError("after writes")

    job = Task(
        state=Account,
        event=Deposit,
        on_event=lambda event, ctx: (ctx.set_state(Account(event.amount)), ctx.schedule("1 hour")),
        execute=execute,
        retry=RETRY,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.task(job).send("a", Deposit(5))
    await rt.advance("1 hour")

    assert await rt.client.task(job).get_state("a") == TaskState(
        Account(5), later(hours=1, seconds=10)
    )
    assert types(rt.events) == ["job.started", "task.scheduled", "job.failed"]


async def test_a_failing_flush_keeps_the_whole_batch_for_the_retry() -> None:
    def on_event(ctx: DebounceEventContext[Deposit, Account]) -> Account:
        return Account(ctx.state.balance + ctx.event.amount, (*ctx.state.history, "+"))

    def execute(ctx: DebounceExecuteContext[Account]) -> None:
        raise ConnectionError("ledger down")

    job = Debounce(
        event=Deposit,
        state=Account,
        on_event=on_event,
        execute=execute,
        flush_after="5 seconds",
        retry=RETRY,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.debounce(job).add("a", Deposit(1))
    await rt.client.debounce(job).add("a", Deposit(2))
    before = await stored(rt, "debounce:j:a")
    await rt.advance("5 seconds")

    assert await rt.client.debounce(job).get_state("a") == Account(3, ("+", "+"))
    status = await rt.client.debounce(job).status("a")
    assert attrs.evolve(status, last_error=None) == DebounceStatus(
        "debouncing", 2, later(seconds=15)
    )
    assert status.last_error is not None
    assert (status.last_error.type, status.last_error.at) == ("ConnectionError", later(seconds=5))
    assert sorted(written(before, await stored(rt, "debounce:j:a"))) == [
        "alarm_at",
        "attempt",
        "last_error",
    ]
    await assert_failure_kept(rt, "debounce:j:a", status.last_error, "alarm", "retrying")
    assert "debounce.flushed" not in types(rt.events)


async def test_a_failing_debounce_reducer_adds_nothing_to_the_batch() -> None:
    def on_event(ctx: DebounceEventContext[Deposit, Account]) -> Account:
        if ctx.event.amount < 0:
            raise ValueError("negative deposit")
        return Account(ctx.state.balance + ctx.event.amount)

    job = Debounce(
        event=Deposit, state=Account, on_event=on_event, execute=lambda ctx: None, flush_after=5
    )
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.debounce(job).add("a", Deposit(1))
    before = await stored(rt, "debounce:j:a")
    with pytest.raises(ExecutionError, match="negative deposit") as caught:
        await rt.client.debounce(job).add("a", Deposit(-1))
    assert isinstance(caught.value.__cause__, ValueError)
    status = await rt.client.debounce(job).status("a")
    assert attrs.evolve(status, last_error=None) == DebounceStatus(
        "debouncing", 1, later(seconds=5)
    )
    assert status.last_error is not None
    assert status.last_error.message == "negative deposit"
    assert await rt.client.debounce(job).get_state("a") == Account(1)
    assert list(written(before, await stored(rt, "debounce:j:a"))) == ["last_error"]
    await assert_failure_kept(rt, "debounce:j:a", status.last_error, "add", "failed")


async def test_terminate_after_writes_deletes_rather_than_storing_them() -> None:
    def execute(ctx: ContinuousContext[Account]) -> None:
        ctx.set_state(Account(1_000_000))
        ctx.terminate("closing")

    job = Continuous(state=Account, schedule=every("1 hour"), execute=execute)
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.continuous(job).start("a", Account(1))
    await rt.advance(0)
    assert await rt.client.continuous(job).get_state("a") is None
    assert types(rt.events) == ["job.started", "job.terminated"]
    assert await rt.client.dead_letter("continuous:j:a") is None


async def test_writes_of_a_successful_call_are_all_visible_together() -> None:
    # One send changes state, counter and alarm, and emits its events: all or nothing.
    job = Task(
        state=Account,
        event=Deposit,
        on_event=lambda event, ctx: (ctx.set_state(Account(event.amount)), ctx.schedule("1 hour")),
        execute=lambda ctx: None,
    )
    rt = create_test_runtime({"j": job}, now=T0)
    result = await rt.client.task(job).send("a", Deposit(7))
    assert result.scheduled_at == later(hours=1)
    assert await rt.client.task(job).get_state("a") == TaskState(Account(7), later(hours=1))
    assert await rt.client.task(job).status("a") == TaskStatus("active", later(hours=1), 1)
    assert types(rt.events) == ["job.started", "task.scheduled"]
