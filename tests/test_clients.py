"""The clients: typed handles by definition or by name, the blocking ``sync_client``
that forwards to the asyncio one, results and errors."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

import durable_jobs
from durable_jobs import (
    AddResult,
    ClearResult,
    Continuous,
    ContinuousStatus,
    DeadLetter,
    Debounce,
    DebounceStatus,
    DuplicateEventError,
    DurableJobsError,
    FlushResult,
    JobNotFoundError,
    SendResult,
    StartResult,
    Task,
    TaskContext,
    TaskState,
    TaskStatus,
    TerminateResult,
    TriggerResult,
    ValidationError,
    create_durable_jobs,
    every,
)
from durable_jobs.testing import TestRuntime, create_test_runtime
from tests.support import T0, ManualClock, later


@attrs.frozen
class Tokens:
    access_token: str
    refresh_token: str


@attrs.frozen
class Hit:
    n: int


@attrs.frozen
class Total:
    n: int = 0


def refresh(ctx: object) -> None:
    ctx.set_state(Tokens(f"at-{ctx.run_count}", ctx.state.refresh_token))


def add_hit(event: Hit, ctx: TaskContext[Total]) -> None:
    ctx.set_state(Total((ctx.state or Total()).n + event.n))
    ctx.schedule("1 minute")


refresher = Continuous(state=Tokens, schedule=every("30 minutes"), execute=refresh)
batcher = Debounce(event=Hit, flush_after="5 seconds", execute=lambda ctx: None)
totals = Task(state=Total, event=Hit, on_event=add_hit, execute=lambda ctx: 1 / 0)
JOBS = {"refresher": refresher, "batcher": batcher, "totals": totals}


@pytest.fixture
def rt() -> TestRuntime:
    return create_test_runtime(JOBS, now=T0)


# -- the blocking client -----------------------------------------------------------------


def test_the_sync_client_forwards_every_continuous_call(rt: TestRuntime) -> None:
    handle = rt.sync_client.continuous(refresher)
    try:
        assert handle.start("u", Tokens("", "r")) == StartResult(
            True, "continuous:refresher:u", "running"
        )
        assert handle.status("u") == ContinuousStatus("running", 0, T0)
        assert handle.trigger("u") == TriggerResult(True)
        assert handle.get_state("u") == Tokens("at-1", "r")
        assert handle.status("u") == ContinuousStatus("running", 1, later(minutes=30))
        assert handle.terminate("u", "bye") == TerminateResult(True, "bye")
        assert handle.get_state("u") is None
    finally:
        rt.sync_client.close()


def test_the_sync_client_forwards_every_debounce_call(rt: TestRuntime) -> None:
    handle = rt.sync_client.debounce("batcher")
    try:
        assert handle.add("d", Hit(1)) == AddResult(True, 1, later(seconds=5))
        assert handle.add("d", Hit(2)) == AddResult(False, 2, later(seconds=5))
        assert handle.status("d") == DebounceStatus("debouncing", 2, later(seconds=5))
        assert handle.get_state("d") == Hit(2)
        assert handle.flush("d") == FlushResult(True)
        assert handle.add("d", Hit(3)).created is True
        assert handle.clear("d") == ClearResult(True, 1)
    finally:
        rt.sync_client.close()


def test_the_sync_client_forwards_every_task_call_and_dead_letter(rt: TestRuntime) -> None:
    handle = rt.sync_client.task(totals)
    try:
        assert handle.send("t", Hit(4)) == SendResult(True, "task:totals:t", later(minutes=1))
        assert handle.status("t") == TaskStatus("active", later(minutes=1), 1)
        assert handle.get_state("t") == TaskState(Total(4), later(minutes=1))
        assert handle.trigger("t") == TriggerResult(True)  # execute fails: no retry policy
        assert handle.status("t") == TaskStatus("not_found")
        dead = rt.sync_client.dead_letter("task:totals:t")
        assert dead is not None
        assert "ZeroDivisionError: division by zero" in dead.traceback
        assert attrs.evolve(dead, traceback="") == DeadLetter(
            "task:totals:t",
            Total(4),
            "ZeroDivisionError: division by zero",
            1,
            T0,
            job_name="totals",
            kind="task",
        )
        assert handle.terminate("t") == TerminateResult(False)
    finally:
        rt.sync_client.close()


def test_the_sync_client_raises_the_same_errors(rt: TestRuntime) -> None:
    try:
        with pytest.raises(ValidationError, match="invalid id"):
            rt.sync_client.task(totals).send("", Hit(1))
        with pytest.raises(ValidationError, match="expected Hit"):
            rt.sync_client.task(totals).send("t", Tokens("a", "b"))
        with pytest.raises(JobNotFoundError):
            rt.sync_client.task("nope")
        rt.sync_client.task(totals).send("t", Hit(1), idempotency_key="k")
        with pytest.raises(DuplicateEventError):
            rt.sync_client.task(totals).send("t", Hit(1), idempotency_key="k")
    finally:
        rt.sync_client.close()


async def test_the_sync_client_shares_state_with_the_async_client_and_the_fake_clock(
    rt: TestRuntime,
) -> None:
    # A sync service calling from its own thread while the async side moves time.
    sync = rt.sync_client.continuous(refresher)
    await asyncio.to_thread(sync.start, "u", Tokens("", "r"))
    await rt.advance("30 minutes")
    assert await asyncio.to_thread(sync.get_state, "u") == Tokens("at-2", "r")
    assert await rt.client.continuous(refresher).status("u") == await asyncio.to_thread(
        sync.status, "u"
    )
    await rt.aclose()


# -- handles -----------------------------------------------------------------------------


async def test_a_handle_by_definition_and_by_name_reach_the_same_instances(rt: TestRuntime) -> None:
    await rt.client.task(totals).send("t", Hit(2))
    await rt.client.task("totals").send("t", Hit(3))
    assert (await rt.client.task("totals").get_state("t")).state == Total(5)
    assert (await rt.client.task(totals).status("t")).event_count == 2


async def test_a_client_of_create_durable_jobs_works_without_the_test_runtime() -> None:
    jobs = create_durable_jobs(JOBS, storage="memory://", clock=ManualClock())
    result = await jobs.client.continuous(refresher).start("u", Tokens("", "r"))
    assert result == StartResult(True, "continuous:refresher:u", "running")
    assert await jobs.client.continuous(refresher).trigger("u") == TriggerResult(True)
    assert await jobs.client.continuous(refresher).get_state("u") == Tokens("at-1", "r")
    await jobs.aclose()


def test_the_storage_url_must_be_one_of_the_known_back_ends() -> None:
    with pytest.raises(ValueError, match="unknown storage 'redis://x'"):
        create_durable_jobs(JOBS, storage="redis://x")


# -- result types and errors -------------------------------------------------------------

RESULTS = [
    StartResult(True, "continuous:j:a", "running"),
    TriggerResult(True),
    ContinuousStatus("running", 1, T0),
    TerminateResult(True, "r"),
    AddResult(True, 1, T0),
    FlushResult(True),
    ClearResult(True, 1),
    DebounceStatus("idle", 0, None),
    SendResult(True, "task:j:a", None),
    TaskStatus("idle", None, 0),
    TaskState(None, None),
    DeadLetter("task:j:a", None, "E: x", 1, T0),
]


@pytest.mark.parametrize("result", RESULTS, ids=lambda r: type(r).__name__)
def test_results_are_frozen_attrs_classes_exported_from_the_package(result: object) -> None:
    cls = type(result)
    assert attrs.has(cls)
    assert getattr(durable_jobs, cls.__name__) is cls
    first = attrs.fields(cls)[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(result, first, None)


def test_result_times_are_aware_datetimes() -> None:
    assert ContinuousStatus("running", 1, T0).next_run_at.tzinfo is not None
    assert isinstance(AddResult(True, 1, T0).will_flush_at, datetime)


@pytest.mark.parametrize(
    "name",
    [
        "JobNotFoundError",
        "InstanceNotFoundError",
        "InvalidStateError",
        "ValidationError",
        "ExecutionError",
        "DuplicateEventError",
        "StorageError",
        "SchedulerError",
    ],
)
def test_every_error_is_exported_and_a_durable_jobs_error(name: str) -> None:
    error = getattr(durable_jobs, name)
    assert issubclass(error, DurableJobsError)
    assert name in durable_jobs.__all__


def test_closing_after_blocking_calls_only_closes_the_store(tmp_path: Path) -> None:
    """The blocking client's private loop has a runtime of its own: ``aclose`` releases
    it and closes the store, whose writer thread then ends."""
    app = create_durable_jobs({"job": _sync_probe_job()}, storage=f"sqlite:///{tmp_path / 'j.db'}")
    before = set(threading.enumerate())
    app.sync_client.task("job").send("a", _Probe())
    writers = [t for t in set(threading.enumerate()) - before if t.name == "durable-jobs-sqlite"]
    assert len(writers) == 1
    asyncio.run(app.aclose())
    assert not writers[0].is_alive()


@attrs.frozen
class _Probe:
    pass


def _sync_probe_job() -> Task[_Probe, _Probe]:
    async def on_event(event: _Probe, ctx: TaskContext[_Probe]) -> None:
        ctx.set_state(event)

    async def execute(ctx: TaskContext[_Probe]) -> None:
        return None

    return Task(state=_Probe, event=_Probe, on_event=on_event, execute=execute)


async def test_first_calls_racing_open_the_store_once() -> None:
    from durable_jobs.adapters.memory import MemoryStore
    from durable_jobs.runtime.app import DurableJobs

    class Counting(MemoryStore):
        opened = 0

        async def open(self) -> None:
            Counting.opened += 1
            await asyncio.sleep(0)  # an opening takes a while, as on disk

    store = Counting()
    app = DurableJobs({"p": _racing_job()}, storage=(store, store))
    await asyncio.gather(*(app.client.task("p").status(f"k{n}") for n in range(50)))
    assert Counting.opened == 1
    await app.aclose()


def _racing_job() -> Any:
    import attrs

    from durable_jobs import Task

    @attrs.frozen
    class Nothing:
        pass

    async def skip(*_: object) -> None:
        return None

    return Task(state=Nothing, event=Nothing, on_event=skip, execute=skip)
