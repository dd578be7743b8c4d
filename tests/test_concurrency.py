"""Single activation (SEMANTICS 1): calls to one instance are applied one after
another, calls to different instances run concurrently, a blocking plain handler does
not stall other instances, and read-only calls never wait."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest

from durable_jobs import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceEventContext,
    DebounceExecuteContext,
    Task,
    TaskContext,
    TaskState,
    TaskStatus,
    every,
)
from durable_jobs.adapters.memory import MemoryStore
from durable_jobs.adapters.records import Claim, Commit, InstanceRecord
from durable_jobs.runtime.clock import SystemClock
from durable_jobs.runtime.counters import TaskCounters
from durable_jobs.runtime.shell import InstanceShell, Target
from durable_jobs.testing import TestRuntime, create_test_runtime
from tests.support import T0

# Bounds that only matter when something is broken: a deadlock fails instead of hanging.
DEADLOCK = 10


@attrs.frozen
class Count:
    n: int = 0


@attrs.frozen
class Inc:
    pass


class InFlight:
    """Counts handlers running per instance, from any thread, and remembers the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: Tally[str] = Tally()
        self.peak: Tally[str] = Tally()

    def enter(self, instance_id: str) -> None:
        with self._lock:
            self._now[instance_id] += 1
            self.peak[instance_id] = max(self.peak[instance_id], self._now[instance_id])

    def leave(self, instance_id: str) -> None:
        with self._lock:
            self._now[instance_id] -= 1


def racy_counter(guard: InFlight) -> Task[Count, Inc]:
    """A read-modify-write that yields between the read and the write."""

    async def on_event(event: Inc, ctx: TaskContext[Count]) -> None:
        guard.enter(ctx.instance_id)
        try:
            n = ctx.state.n if ctx.state else 0
            await asyncio.sleep(0)
            ctx.set_state(Count(n + 1))
        finally:
            guard.leave(ctx.instance_id)

    return Task(state=Count, event=Inc, on_event=on_event, execute=lambda ctx: None)


async def test_200_concurrent_sends_to_one_instance_are_applied_one_at_a_time() -> None:
    guard = InFlight()
    job = racy_counter(guard)
    rt = create_test_runtime({"counter": job}, now=T0)
    handle = rt.client.task(job)

    results = await asyncio.wait_for(
        asyncio.gather(*(handle.send("one", Inc()) for _ in range(200))), DEADLOCK
    )
    assert (await handle.get_state("one")).state == Count(200)
    assert await handle.status("one") == TaskStatus("idle", None, 200)
    assert guard.peak["task:counter:one"] == 1
    assert sum(r.created for r in results) == 1


async def test_sends_from_other_threads_and_this_loop_to_one_instance_never_overlap() -> None:
    # The blocking client runs on its own event loop: the claim in the store, not a
    # lock of this loop, keeps the two apart.
    guard = InFlight()
    job = racy_counter(guard)
    rt = create_test_runtime({"counter": job}, now=T0)
    sync_handle = rt.sync_client.task(job)

    def sync_sends() -> None:
        for _ in range(25):
            sync_handle.send("one", Inc())

    threads = [asyncio.to_thread(sync_sends) for _ in range(2)]
    async_sends = [rt.client.task(job).send("one", Inc()) for _ in range(50)]
    await asyncio.wait_for(asyncio.gather(*threads, *async_sends), 30)
    assert (await rt.client.task(job).get_state("one")).state == Count(100)
    assert guard.peak["task:counter:one"] == 1
    await rt.aclose()


async def test_concurrent_adds_to_one_debounce_instance_are_all_counted() -> None:
    guard = InFlight()

    async def fold(ctx: DebounceEventContext[Inc, Count]) -> Count:
        guard.enter(ctx.instance_id)
        try:
            n = ctx.state.n
            await asyncio.sleep(0)
            return Count(n + 1)
        finally:
            guard.leave(ctx.instance_id)

    job = Debounce(
        event=Inc, state=Count, on_event=fold, execute=lambda ctx: None, flush_after="1 hour"
    )
    rt = create_test_runtime({"batch": job}, now=T0)
    handle = rt.client.debounce(job)
    results = await asyncio.wait_for(
        asyncio.gather(*(handle.add("one", Inc()) for _ in range(200))), DEADLOCK
    )
    assert await handle.get_state("one") == Count(200)
    assert (await handle.status("one")).event_count == 200
    assert sorted(r.event_count for r in results) == list(range(1, 201))
    assert guard.peak["debounce:batch:one"] == 1


async def test_concurrent_triggers_of_one_continuous_instance_run_one_at_a_time() -> None:
    guard = InFlight()

    async def execute(ctx: ContinuousContext[Count]) -> None:
        guard.enter(ctx.instance_id)
        try:
            n = ctx.state.n
            await asyncio.sleep(0)
            ctx.set_state(Count(n + 1))
        finally:
            guard.leave(ctx.instance_id)

    job = Continuous(state=Count, schedule=every("1 day"), execute=execute)
    rt = create_test_runtime({"c": job}, now=T0)
    handle = rt.client.continuous(job)
    await handle.start("one", Count())
    await asyncio.wait_for(asyncio.gather(*(handle.trigger("one") for _ in range(50))), DEADLOCK)
    assert await handle.get_state("one") == Count(50)
    assert (await handle.status("one")).run_count == 50
    assert guard.peak["continuous:c:one"] == 1


async def test_many_instances_under_concurrent_load_each_count_exactly() -> None:
    guard = InFlight()
    job = racy_counter(guard)
    rt = create_test_runtime({"counter": job}, now=T0)
    handle = rt.client.task(job)
    keys = [f"k{n % 10}" for n in range(300)]
    await asyncio.wait_for(asyncio.gather(*(handle.send(k, Inc()) for k in keys)), DEADLOCK)
    for k in set(keys):
        assert await handle.get_state(k) == TaskState(Count(30), None)
    assert set(guard.peak.values()) == {1}


async def test_calls_to_different_instances_run_at_the_same_time() -> None:
    inside = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def on_event(event: Inc, ctx: TaskContext[Count]) -> None:
        other = "b" if ctx.id == "a" else "a"
        inside[ctx.id].set()
        await inside[other].wait()  # only returns if the other handler is running too
        ctx.set_state(Count(1))

    job = Task(state=Count, event=Inc, on_event=on_event, execute=lambda ctx: None)
    rt = create_test_runtime({"pair": job}, now=T0)
    handle = rt.client.task(job)
    await asyncio.wait_for(
        asyncio.gather(handle.send("a", Inc()), handle.send("b", Inc())), DEADLOCK
    )
    assert (await handle.get_state("a")).state == Count(1)
    assert (await handle.get_state("b")).state == Count(1)


# -- blocking plain handlers ---------------------------------------------------------------


class Gate:
    """Blocks a plain handler's thread until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def block(self, key: str) -> None:
        if key == "slow":
            self.entered.set()
            assert self.release.wait(DEADLOCK), "the gate was never opened"


Setup = Callable[[Gate], tuple[Any, Callable[[TestRuntime, str], Awaitable[Any]]]]


def task_on_event(gate: Gate) -> tuple[Any, Callable[[TestRuntime, str], Awaitable[Any]]]:
    def on_event(event: Inc, ctx: TaskContext[Count]) -> None:
        gate.block(ctx.id)
        ctx.set_state(Count(1))

    job = Task(state=Count, event=Inc, on_event=on_event, execute=lambda ctx: None)

    async def call(rt: TestRuntime, key: str) -> Any:
        return await rt.client.task(job).send(key, Inc())

    return job, call


def task_execute(gate: Gate) -> tuple[Any, Callable[[TestRuntime, str], Awaitable[Any]]]:
    def execute(ctx: TaskContext[Count]) -> None:
        gate.block(ctx.id)

    job = Task(state=Count, event=Inc, on_event=lambda e, ctx: None, execute=execute)

    async def call(rt: TestRuntime, key: str) -> Any:
        await rt.client.task(job).send(key, Inc())
        return await rt.client.task(job).trigger(key)

    return job, call


def continuous_execute(gate: Gate) -> tuple[Any, Callable[[TestRuntime, str], Awaitable[Any]]]:
    def execute(ctx: ContinuousContext[Count]) -> None:
        gate.block(ctx.id)

    job = Continuous(state=Count, schedule=every("1 day"), execute=execute)

    async def call(rt: TestRuntime, key: str) -> Any:
        await rt.client.continuous(job).start(key, Count())
        return await rt.client.continuous(job).trigger(key)

    return job, call


def debounce_on_event(gate: Gate) -> tuple[Any, Callable[[TestRuntime, str], Awaitable[Any]]]:
    def fold(ctx: DebounceEventContext[Inc, Count]) -> Count:
        gate.block(ctx.id)
        return Count(ctx.state.n + 1)

    job = Debounce(event=Inc, state=Count, on_event=fold, execute=lambda ctx: None, flush_after=60)

    async def call(rt: TestRuntime, key: str) -> Any:
        return await rt.client.debounce(job).add(key, Inc())

    return job, call


def debounce_execute(gate: Gate) -> tuple[Any, Callable[[TestRuntime, str], Awaitable[Any]]]:
    def execute(ctx: DebounceExecuteContext[Inc]) -> None:
        gate.block(ctx.id)

    job = Debounce(event=Inc, execute=execute, flush_after=60)

    async def call(rt: TestRuntime, key: str) -> Any:
        await rt.client.debounce(job).add(key, Inc())
        return await rt.client.debounce(job).flush(key)

    return job, call


@pytest.mark.parametrize(
    "setup", [task_on_event, task_execute, continuous_execute, debounce_on_event, debounce_execute]
)
async def test_a_blocking_plain_handler_does_not_stall_other_instances(setup: Setup) -> None:
    gate = Gate()
    job, call = setup(gate)
    rt = create_test_runtime({"job": job}, now=T0)

    slow = asyncio.ensure_future(call(rt, "slow"))
    assert await asyncio.to_thread(gate.entered.wait, DEADLOCK)
    # The slow handler's thread is blocked; this loop and other instances are not.
    await asyncio.wait_for(call(rt, "fast"), DEADLOCK)
    assert not slow.done()
    gate.release.set()
    await asyncio.wait_for(slow, DEADLOCK)


# -- read-only calls ------------------------------------------------------------------------


async def test_status_and_get_state_read_the_last_commit_without_waiting_for_a_handler() -> None:
    started, finish = asyncio.Event(), asyncio.Event()

    async def on_event(event: Inc, ctx: TaskContext[Count]) -> None:
        ctx.set_state(Count((ctx.state.n if ctx.state else 0) + 1))
        ctx.schedule("1 minute")
        if ctx.event_count == 1:
            started.set()
            await finish.wait()

    job = Task(state=Count, event=Inc, on_event=on_event, execute=lambda ctx: None)
    rt = create_test_runtime({"j": job}, now=T0)
    handle = rt.client.task(job)
    await handle.send("a", Inc())  # committed: n=1, idle... then scheduled
    await rt.advance("1 minute")
    in_flight = asyncio.ensure_future(handle.send("a", Inc()))
    await asyncio.wait_for(started.wait(), DEADLOCK)

    # The handler holds the instance; the reads return at once with the committed data.
    state = await asyncio.wait_for(handle.get_state("a"), DEADLOCK)
    status = await asyncio.wait_for(handle.status("a"), DEADLOCK)
    assert state == TaskState(Count(1), None)
    assert status == TaskStatus("idle", None, 1)
    assert not in_flight.done()

    finish.set()
    await asyncio.wait_for(in_flight, DEADLOCK)
    assert (await handle.get_state("a")).state == Count(2)
    assert (await handle.status("a")).event_count == 2


async def test_activations_are_evicted_once_their_calls_are_done() -> None:
    """A worker's memory must not grow with the number of instances it has touched."""
    from durable_jobs import create_durable_jobs

    @attrs.frozen
    class Seen:
        n: int = 0

    @attrs.frozen
    class Touch:
        pass

    async def touch(event: Touch, ctx: Any) -> None:
        ctx.set_state(Seen((ctx.state or Seen()).n + 1))
        ctx.schedule("1 second")

    async def done(ctx: Any) -> None:
        return None

    job = Task(state=Seen, event=Touch, on_event=touch, execute=done)
    jobs = create_durable_jobs({"job": job}, storage="memory://")
    await asyncio.gather(*(jobs.client.task(job).send(f"i{n}", Touch()) for n in range(500)))
    runtime = await jobs.runtime()
    assert runtime.shell.active_count == 0
    assert len(await jobs.storage.list_instances()) == 500


async def test_a_call_waiting_for_a_claim_goes_on_with_one_a_worker_adopts_meanwhile() -> None:
    """The call holds the instance's lock while it waits; a worker of the same process
    that claims the instance queues behind it, so the call must use that claim."""
    refused = asyncio.Event()

    class Refusing(MemoryStore):
        async def claim(self, *args: Any) -> Claim | None:
            taken = await super().claim(*args)
            if taken is None:
                refused.set()
            return taken

    store, clock = Refusing(), SystemClock()
    shell = InstanceShell(store, clock, publish=lambda events: None)
    target = Target("task:job:a", "task", "job", "a")
    rival = await store.claim(target.instance_id, "rival", clock.now(), clock.now() + 60)
    assert rival is not None

    async def operation(draft: Any) -> str:
        return "ran"

    calling = asyncio.ensure_future(shell.call(target, operation))
    await asyncio.wait_for(refused.wait(), DEADLOCK)
    due = InstanceRecord(
        instance_id=target.instance_id, kind="task", job_name="job", key="a", state=None,
        meta="{}", alarm_at=clock.now() - 1, created_at=clock.now(), updated_at=clock.now(),
    )  # fmt: skip
    assert await store.commit(Commit(claim=rival, record=due))  # releases it, alarm due
    assert [c.instance_id for c in await shell.claim_due(store, 1, {"job"})] == ["task:job:a"]
    assert await asyncio.wait_for(calling, DEADLOCK) == "ran"
    await shell.close()


async def test_a_due_alarm_claimed_while_a_commit_is_answered_is_delivered() -> None:
    """A commit that releases an instance is visible before it is answered (SQLite
    answers a durable commit after its fsync): a worker of the same process may claim
    the instance's due alarm meanwhile. The call must leave that claim in place."""
    committed, answer = asyncio.Event(), asyncio.Event()

    class SlowToAnswer(MemoryStore):
        async def commit(self, commit: Commit) -> bool:
            applied = await super().commit(commit)
            committed.set()
            await answer.wait()
            return applied

    store, clock = SlowToAnswer(), SystemClock()
    shell = InstanceShell(store, clock, publish=lambda events: None)
    target = Target("task:job:a", "task", "job", "a")

    async def arm(draft: Any) -> None:
        draft.create(TaskCounters(event_count=0, execute_count=0, attempt=1))
        draft.update(alarm_at=clock.now() - 1)

    calling = asyncio.ensure_future(shell.call(target, arm))
    await asyncio.wait_for(committed.wait(), DEADLOCK)
    [due] = await shell.claim_due(store, 1, {"job"})
    answer.set()
    await asyncio.wait_for(calling, DEADLOCK)
    ran: list[str] = []

    async def deliver(draft: Any) -> None:
        ran.append(draft.instance_id)

    await asyncio.wait_for(shell.call(target, deliver), DEADLOCK)  # not waiting for a claim
    assert ran == [due.instance_id]
    await shell.close()
