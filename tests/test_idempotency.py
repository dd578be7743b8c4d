"""Idempotency (SEMANTICS 7): an ``add``/``send`` whose key the instance already
applied raises ``DuplicateEventError`` and changes nothing."""

from __future__ import annotations

import asyncio

import attrs
import pytest

from durable_jobs import (
    Debounce,
    DebounceEventContext,
    DebounceStatus,
    DuplicateEventError,
    ExecutionError,
    Task,
    TaskContext,
    TaskStatus,
    ValidationError,
)
from durable_jobs.testing import create_test_runtime
from tests.support import T0, types


@attrs.frozen
class Payment:
    cents: int


@attrs.frozen
class Balance:
    cents: int = 0
    payments: int = 0


def ledger() -> tuple[Task[Balance, Payment], list[int]]:
    applied: list[int] = []

    def on_event(event: Payment, ctx: TaskContext[Balance]) -> None:
        if event.cents < 0:
            raise ValueError("refunds are not payments")
        applied.append(event.cents)
        current = ctx.state or Balance()
        ctx.set_state(Balance(current.cents + event.cents, current.payments + 1))

    job = Task(state=Balance, event=Payment, on_event=on_event, execute=lambda ctx: None)
    return job, applied


async def test_a_send_with_an_applied_key_is_refused_and_changes_nothing() -> None:
    job, applied = ledger()
    rt = create_test_runtime({"ledger": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("acct", Payment(500), idempotency_key="charge-1")
    events_before = list(rt.events)

    with pytest.raises(DuplicateEventError, match=r"'charge-1'.*task:ledger:acct"):
        await handle.send("acct", Payment(500), idempotency_key="charge-1")
    assert applied == [500]
    assert (await handle.get_state("acct")).state == Balance(500, 1)
    assert (await handle.status("acct")).event_count == 1
    assert rt.events == events_before


async def test_different_keys_and_no_key_are_all_applied() -> None:
    job, applied = ledger()
    rt = create_test_runtime({"ledger": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("acct", Payment(1), idempotency_key="a")
    await handle.send("acct", Payment(2), idempotency_key="b")
    await handle.send("acct", Payment(3))
    await handle.send("acct", Payment(3))
    assert applied == [1, 2, 3, 3]


async def test_keys_are_per_instance() -> None:
    job, applied = ledger()
    rt = create_test_runtime({"ledger": job}, now=T0)
    await rt.client.task(job).send("alice", Payment(1), idempotency_key="k")
    await rt.client.task(job).send("bob", Payment(2), idempotency_key="k")
    assert applied == [1, 2]


@pytest.mark.parametrize("bad", [Payment(-1), "not a payment"], ids=["handler-fails", "invalid"])
async def test_a_key_whose_call_failed_is_not_spent(bad: object) -> None:
    job, applied = ledger()
    rt = create_test_runtime({"ledger": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("acct", Payment(1))
    with pytest.raises((ExecutionError, ValidationError)):
        await handle.send("acct", bad, idempotency_key="retry-me")
    await handle.send("acct", Payment(7), idempotency_key="retry-me")
    assert applied == [1, 7]


async def test_a_terminated_instance_forgets_its_keys() -> None:
    job, applied = ledger()
    rt = create_test_runtime({"ledger": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("acct", Payment(1), idempotency_key="k")
    await handle.terminate("acct")
    # A fresh instance under the same id: the key belongs to the deleted one.
    await handle.send("acct", Payment(2), idempotency_key="k")
    assert applied == [1, 2]
    assert (await handle.get_state("acct")).state == Balance(2, 1)


async def test_concurrent_sends_with_one_key_apply_exactly_once() -> None:
    job, applied = ledger()
    rt = create_test_runtime({"ledger": job}, now=T0)
    handle = rt.client.task(job)
    results = await asyncio.gather(
        *(handle.send("acct", Payment(100), idempotency_key="once") for _ in range(25)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, DuplicateEventError) for r in results if isinstance(r, BaseException))
    assert applied == [100]
    assert (await handle.get_state("acct")).state == Balance(100, 1)
    assert await handle.status("acct") == TaskStatus("idle", None, 1)


@attrs.frozen
class Click:
    page: str


@attrs.frozen
class Pages:
    seen: tuple[str, ...] = ()


def page_batcher() -> Debounce[Click, Pages]:
    def fold(ctx: DebounceEventContext[Click, Pages]) -> Pages:
        return Pages((*ctx.state.seen, ctx.event.page))

    return Debounce(
        event=Click, state=Pages, on_event=fold, execute=lambda ctx: None, flush_after=10
    )


async def test_an_add_with_an_applied_key_is_refused_and_the_batch_unchanged() -> None:
    job = page_batcher()
    rt = create_test_runtime({"pages": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("s", Click("/a"), idempotency_key="evt-1")
    with pytest.raises(DuplicateEventError):
        await handle.add("s", Click("/a"), idempotency_key="evt-1")
    assert await handle.get_state("s") == Pages(("/a",))
    assert (await handle.status("s")).event_count == 1
    assert types(rt.events) == ["debounce.started"]


async def test_a_debounce_key_stays_spent_after_its_batch_was_flushed() -> None:
    # A webhook redelivered after the flush must not start a second batch.
    flushed: list[int] = []
    job = Debounce(event=Click, flush_after=10, execute=lambda ctx: flushed.append(ctx.event_count))
    rt = create_test_runtime({"pages": job}, now=T0)
    handle = rt.client.debounce(job)
    await handle.add("s", Click("/a"), idempotency_key="evt-1")
    await rt.advance("10 seconds")
    with pytest.raises(DuplicateEventError):
        await handle.add("s", Click("/a"), idempotency_key="evt-1")
    assert await handle.status("s") == DebounceStatus("idle", 0, None)
    await rt.advance("1 minute")
    assert flushed == [1]
