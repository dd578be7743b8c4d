"""Atomic commit (SEMANTICS 2): everything one handler call changes — state, counters,
alarm, telemetry — commits together or not at all. A handler that raises commits none
of its writes; only the failure bookkeeping (attempt, retry alarm, failure event)."""

from __future__ import annotations

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
    ExecutionError,
    Retry,
    Task,
    TaskContext,
    TaskState,
    TaskStatus,
    every,
)
from durable_jobs.testing import create_test_runtime
from tests.support import T0, later, types


@attrs.frozen
class Account:
    balance: int = 0
    history: tuple[str, ...] = ()


@attrs.frozen
class Deposit:
    amount: int


RETRY = Retry(max_attempts=3, delay=Backoff.fixed("10 seconds"))


async def test_a_failing_continuous_run_writes_only_the_attempt_and_retry_alarm() -> None:
    def execute(ctx: ContinuousContext[Account]) -> None:
        ctx.set_state(Account(999, ("half-done",)))
        raise RuntimeError("crashed after set_state")

    job = Continuous(state=Account, schedule=every("1 hour"), execute=execute, retry=RETRY)
    rt = create_test_runtime({"j": job}, now=T0)
    await rt.client.continuous(job).start("a", Account(10))
    await rt.advance(0)

    assert await rt.client.continuous(job).get_state("a") == Account(10)
    # run_count unchanged; the alarm is the retry's, not the schedule's.
    assert await rt.client.continuous(job).status("a") == ContinuousStatus(
        "running", 0, later(seconds=10)
    )
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

    with pytest.raises(ExecutionError, match="overdraft"):
        await rt.client.task(job).send("a", Deposit(-50))
    assert await rt.client.task(job).get_state("a") == TaskState(Account(5), later(hours=1))
    assert await rt.client.task(job).status("a") == TaskStatus("active", later(hours=1), 1)
    assert rt.events == before_events


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
    await rt.advance("5 seconds")

    assert await rt.client.debounce(job).get_state("a") == Account(3, ("+", "+"))
    assert await rt.client.debounce(job).status("a") == DebounceStatus(
        "debouncing", 2, later(seconds=15)
    )
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
    with pytest.raises(ExecutionError, match="negative deposit") as caught:
        await rt.client.debounce(job).add("a", Deposit(-1))
    assert isinstance(caught.value.__cause__, ValueError)
    assert await rt.client.debounce(job).status("a") == DebounceStatus(
        "debouncing", 1, later(seconds=5)
    )
    assert await rt.client.debounce(job).get_state("a") == Account(1)


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
