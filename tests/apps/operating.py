"""An app on a memory store for tests of the operating commands, run in the test's
own process: the test replaces ``jobs`` with a fresh app on a fake clock, fills it,
then runs the command, which loads this module's ``jobs``."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs

from durable_jobs import (
    Backoff,
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceExecuteContext,
    Retry,
    Task,
    TaskContext,
    every,
)
from durable_jobs.runtime.app import DurableJobs
from durable_jobs.runtime.clock import FakeClock


@attrs.define
class Count:
    n: int = 0


@attrs.define
class Order:
    total: int = 0


@attrs.define
class Pay:
    amount: int


class Upstream(Exception):
    pass


def fail_always(ctx: ContinuousContext[Count]) -> None:
    raise Upstream(f"upstream down on run {ctx.run_count}")


def count_run(ctx: ContinuousContext[Count]) -> None:
    ctx.set_state(Count(ctx.state.n + 1))


def on_pay(event: Pay, ctx: TaskContext[Order]) -> None:
    if event.amount < 0:
        raise ValueError("refunds are not payments")
    total = ctx.state.total if ctx.state is not None else 0
    ctx.set_state(Order(total + event.amount))
    ctx.schedule("5 minutes")


def settle(ctx: TaskContext[Order]) -> None:
    if ctx.state.total > 100:
        raise Upstream(f"cannot settle {ctx.state.total}")


def flush_batch(ctx: DebounceExecuteContext[Pay]) -> None:
    return None


ONCE = Retry(max_attempts=1, delay=Backoff.fixed("1 second"))


def make_app(clock: FakeClock) -> DurableJobs:
    definitions = {
        "flaky": Continuous(state=Count, schedule=every("1 minute"), execute=fail_always),
        "ticker": Continuous(state=Count, schedule=every("1 minute"), execute=count_run),
        "orders": Task(state=Order, event=Pay, on_event=on_pay, execute=settle, retry=ONCE),
        "hooks": Debounce(event=Pay, execute=flush_batch, flush_after="10 seconds"),
    }
    return DurableJobs(
        definitions, storage="memory://", clock=clock, heartbeat=False, history_limit=10
    )


jobs = make_app(FakeClock(datetime(2026, 1, 1, tzinfo=UTC)))
